// The demo page: send a file, the sample, or a recording to api/recognize and show the answer.
// Relative URLs only (no leading slash), so the page works under any path prefix.
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const maxSeconds = parseFloat(document.body.dataset.maxSeconds);
  const maxBytes = parseInt(document.body.dataset.maxBytes, 10);
  const modelLoaded = document.body.dataset.modelLoaded === 'true';
  const buttons = ['send-button', 'sample-button', 'record-button'].map($);

  // ---- sending and showing ------------------------------------------------------------------

  let busy = false;

  function setStatus(text) {
    $('status').textContent = text || '';
  }

  function setBusy(on) {
    busy = on;
    document.body.classList.toggle('busy', on);
    $('send-button').disabled = on || !$('file-input').files.length || !modelLoaded;
    $('sample-button').disabled = on || !modelLoaded || $('sample-button').dataset.noSample === 'true';
    $('record-button').disabled = (on && !recorder) || !modelLoaded;
    if (recorder) $('send-button').disabled = $('sample-button').disabled = true;
  }

  function showError(message) {
    const box = $('error-box');
    box.textContent = '⚠ ' + message;
    box.hidden = false;
  }

  function clearError() {
    $('error-box').hidden = true;
    $('error-box').textContent = '';
  }

  async function recognize(blob, filename, reference) {
    clearError();
    if (blob.size > maxBytes) {
      showError(`ファイルが大きすぎます / the file is too large (${(blob.size / 1048576).toFixed(1)} MB > ${(maxBytes / 1048576).toFixed(1)} MB)`);
      return;
    }
    const form = new FormData();
    form.append('file', blob, filename);
    if (reference) form.append('reference', reference);
    setBusy(true);
    setStatus('認識中… / recognizing…');
    const started = performance.now();
    try {
      const response = await fetch('api/recognize', { method: 'POST', body: form });
      let data;
      try {
        data = await response.json();
      } catch (e) {
        data = { error: `HTTP ${response.status} ${response.statusText}` };
      }
      if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
      showResult(data, (performance.now() - started) / 1000);
      setStatus('');
    } catch (err) {
      setStatus('');
      showError(`認識できませんでした / recognition failed: ${err.message}`);
    } finally {
      setBusy(false);
    }
  }

  function showResult(r, roundTrip) {
    const transcript = $('transcript');
    transcript.textContent = r.text || '（空の認識結果 / empty transcript）';
    transcript.classList.toggle('empty', !r.text);
    $('duration').textContent = `${r.duration_s.toFixed(2)} s`;
    $('elapsed').textContent = `${r.recognize_s.toFixed(2)} s 認識 / recognition · ${roundTrip.toFixed(2)} s 往復 / round trip`;
    $('rtf').textContent = r.rtf.toFixed(3);
    $('input-info').textContent = `${r.format}, ${r.sample_rate_in} Hz, ${r.channels} ch`;
    const cer = r.cer;
    $('cer-block').hidden = !cer;
    if (cer) {
      $('reference-text').textContent = r.reference;
      $('cer-value').textContent = `${cer.cer.toFixed(1)} %`;
      $('cer-detail').textContent = `(N=${cer.ref_chars}, S=${cer.S} D=${cer.D} I=${cer.I})`;
    }
    $('spectrogram-figure').hidden = !r.spectrogram;
    if (r.spectrogram) {
      $('spectrogram').src = r.spectrogram;
      $('spectrogram-end').textContent = `${r.duration_s.toFixed(2)} s`;
    }
    const card = $('result-card');
    card.hidden = false;
    card.dataset.state = 'done';
  }

  // ---- file and sample ----------------------------------------------------------------------

  $('file-input').addEventListener('change', () => setBusy(busy));

  $('send-button').addEventListener('click', () => {
    const file = $('file-input').files[0];
    if (file) recognize(file, file.name);
  });

  $('sample-button').addEventListener('click', async () => {
    clearError();
    try {
      const response = await fetch('api/sample');
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      await recognize(blob, 'test.wav', $('sample-reference').textContent.trim());
    } catch (err) {
      showError(`サンプルを読めません / cannot fetch the sample: ${err.message}`);
    }
  });

  // ---- recording: Web Audio PCM -> 16-bit WAV, no codec on the server -----------------------

  let recorder = null; // {stream, ctx, node, chunks, samples}

  function setRecordingUi(state, seconds) {
    const on = state === 'recording';
    $('record-button').classList.toggle('recording', on);
    $('record-button').setAttribute('aria-pressed', String(on));
    $('record-label').innerHTML = on ? '停止 <span class="en">Stop</span>' : '録音 <span class="en">Record</span>';
    const label = { idle: '待機中 <span class="en">idle</span>',
                    starting: 'マイク準備中… <span class="en">starting…</span>',
                    recording: '● 録音中 <span class="en">recording</span>' }[state];
    $('record-state').innerHTML = label;
    $('record-state').dataset.state = state;
    $('record-time').textContent = `${(seconds || 0).toFixed(1)} s`;
    if (!on) $('level-bar').style.width = '0%';
  }

  function showLevel(peak) {
    const db = 20 * Math.log10(Math.max(peak, 1e-5));
    const fraction = Math.min(1, Math.max(0, (db + 60) / 60)); // -60 dBFS .. 0 dBFS
    const bar = $('level-bar');
    bar.style.width = `${(fraction * 100).toFixed(0)}%`;
    bar.classList.toggle('hot', db > -3);
  }

  async function startRecording() {
    clearError();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia || !window.AudioWorkletNode) {
      showError('このブラウザでは録音できません（https か localhost が必要です） / recording needs a modern browser on https or localhost');
      return;
    }
    setRecordingUi('starting');
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      });
    } catch (err) {
      setRecordingUi('idle');
      showError(`マイクを使えません / cannot use the microphone: ${err.message}`);
      return;
    }
    const ctx = new AudioContext();
    await ctx.audioWorklet.addModule('static/recorder-worklet.js');
    const source = ctx.createMediaStreamSource(stream);
    const node = new AudioWorkletNode(ctx, 'recorder');
    const mute = ctx.createGain(); // the graph must reach the destination to be pulled; keep it silent
    mute.gain.value = 0;
    source.connect(node).connect(mute).connect(ctx.destination);
    recorder = { stream, ctx, node, chunks: [], samples: 0 };
    node.port.onmessage = (event) => {
      if (!recorder) return;
      recorder.chunks.push(event.data.samples);
      recorder.samples += event.data.samples.length;
      const seconds = recorder.samples / ctx.sampleRate;
      $('record-time').textContent = `${seconds.toFixed(1)} s`;
      showLevel(event.data.peak);
      if (seconds >= maxSeconds) stopRecording();
    };
    setRecordingUi('recording', 0);
    setBusy(busy);
  }

  async function stopRecording() {
    const rec = recorder;
    if (!rec) return;
    recorder = null;
    rec.node.port.onmessage = null;
    rec.stream.getTracks().forEach((track) => track.stop());
    const sampleRate = rec.ctx.sampleRate;
    await rec.ctx.close();
    setRecordingUi('idle', rec.samples / sampleRate);
    if (rec.samples === 0) {
      showError('録音が空です / nothing was recorded');
      setBusy(busy);
      return;
    }
    const pcm = new Float32Array(rec.samples);
    let offset = 0;
    for (const chunk of rec.chunks) {
      pcm.set(chunk, offset);
      offset += chunk.length;
    }
    await recognize(encodeWav(pcm, sampleRate), 'recording.wav');
  }

  function encodeWav(samples, sampleRate) {
    const bytes = new ArrayBuffer(44 + samples.length * 2);
    const view = new DataView(bytes);
    const text = (offset, s) => { for (let i = 0; i < s.length; i++) view.setUint8(offset + i, s.charCodeAt(i)); };
    text(0, 'RIFF');
    view.setUint32(4, 36 + samples.length * 2, true);
    text(8, 'WAVE');
    text(12, 'fmt ');
    view.setUint32(16, 16, true); // fmt chunk size
    view.setUint16(20, 1, true); // PCM
    view.setUint16(22, 1, true); // mono
    view.setUint32(24, sampleRate, true);
    view.setUint32(28, sampleRate * 2, true); // byte rate
    view.setUint16(32, 2, true); // block align
    view.setUint16(34, 16, true); // bits per sample
    text(36, 'data');
    view.setUint32(40, samples.length * 2, true);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(44 + i * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Blob([bytes], { type: 'audio/wav' });
  }

  $('record-button').addEventListener('click', () => {
    if (recorder) stopRecording();
    else if ($('record-state').dataset.state === 'idle') startRecording();
  });

  if ($('sample-button').disabled) $('sample-button').dataset.noSample = 'true';
  setBusy(false);
})();
