// The demo page: send a file, the sample, or a recording to api/recognize and show the answer:
// the transcript, each character at its time over the spectrogram, the CTC posteriorgram and the
// decoder's attention (api/recognize?details=1), all on one time axis.
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

  // Bring `el` into view when it is not (a phone shows the buttons, not what is below them).
  function reveal(el) {
    const box = el.getBoundingClientRect();
    if (box.top < 0 || box.bottom > window.innerHeight) el.scrollIntoView({ block: 'start' });
  }

  function showError(message) {
    // an old transcript, CER and spectrogram under a new error would read as this request's result
    $('result-card').hidden = true;
    const box = $('error-box');
    box.textContent = '⚠ ' + message;
    box.hidden = false;
    reveal(box);
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
      const response = await fetch('api/recognize?details=1', { method: 'POST', body: form });
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
    showTimeline(r);
    const card = $('result-card');
    card.hidden = false;
    card.dataset.state = 'done';
    reveal(card);
  }

  // ---- one utterance on one time axis: characters, spectrogram, posteriorgram, attention ------
  //
  // Every plot spans [0, duration_s] across the same width (the page's gutter + plot-area rows), so
  // a character, its span on the spectrogram and its column in the two canvases line up. Encoder
  // frame t covers [t * encoder_frame_s, (t + 1) * encoder_frame_s).

  const SPECIAL_LABELS = { '<blank>': 'ε', '<eos>': 'eos', '<sos/eos>': 'eos', '<space>': '␣', '<unk>': 'unk' };
  const label = (token) => SPECIAL_LABELS[token] || token;
  const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
  const INK = [[255, 255, 255], [29, 35, 48]];

  let view = null; // {duration, frameS, tokens, alignment, active (token index or -1), cells (per plot)}

  function ramp(stops, v) {
    const x = Math.min(1, Math.max(0, v)) * (stops.length - 1);
    const i = Math.min(Math.floor(x), stops.length - 2);
    const f = x - i;
    return stops[i].map((c, k) => Math.round(c + (stops[i + 1][k] - c) * f));
  }

  function showTimeline(r) {
    document.querySelectorAll('.time-end').forEach((el) => { el.textContent = `${r.duration_s.toFixed(2)} s`; });
    $('spectrogram-figure').hidden = !r.spectrogram;
    if (r.spectrogram) $('spectrogram').src = r.spectrogram;
    const timed = (r.tokens || []).length > 0 && r.tokens.every((t) => t.start_s !== null);
    view = { duration: Math.max(r.duration_s, 1e-3), frameS: r.encoder_frame_s, tokens: timed ? r.tokens : [],
             alignment: r.alignment || null, active: -1, cells: {} };
    buildCharTrack();
    const a = view.alignment;
    $('posteriorgram-figure').hidden = !a || !a.num_frames;
    $('attention-figure').hidden = !a || !a.num_frames || !a.attention.weights.length;
    document.querySelectorAll('.frame-ms').forEach((el) => { el.textContent = (r.encoder_frame_s * 1000).toFixed(0); });
    if (a && a.num_frames) {
      setRowLabels($('posteriorgram-labels'), a.posteriorgram.tokens);
      if (a.attention.weights.length) setRowLabels($('attention-labels'), a.attention.rows);
    }
    setActive(-1);
    requestAnimationFrame(redraw); // once the figures are laid out and have their widths
  }

  function buildCharTrack() {
    const track = $('char-track');
    track.textContent = '';
    view.tokens.forEach((t, k) => {
      const el = document.createElement('span');
      el.className = 'char';
      el.setAttribute('role', 'listitem');
      el.tabIndex = 0;
      el.lang = 'ja';
      el.textContent = label(t.token);
      el.dataset.index = String(k);
      el.dataset.start = String(t.start_s);
      el.dataset.end = String(t.end_s);
      el.title = `${t.token}  ${t.start_s.toFixed(2)}–${t.end_s.toFixed(2)} s`;
      el.addEventListener('mouseenter', () => setActive(k));
      el.addEventListener('focus', () => setActive(k));
      el.addEventListener('click', () => setActive(k)); // a tap on a phone
      el.addEventListener('mouseleave', () => { if (document.activeElement !== el) setActive(-1); });
      el.addEventListener('blur', () => setActive(-1));
      track.appendChild(el);
    });
    $('char-row').hidden = view.tokens.length === 0;
  }

  // Characters sit centred over their span. One that would touch the character before it steps one
  // lane down (a run of close characters reads as a staircase); one with room goes back to the top.
  // No two overlap however narrow the screen.
  function layoutCharTrack() {
    const track = $('char-track');
    const width = track.clientWidth;
    if (!width) return;
    const laneEnds = [];
    let laneHeight = 0;
    let previous = { lane: -1, right: -Infinity };
    track.querySelectorAll('.char').forEach((el) => {
      const t = view.tokens[Number(el.dataset.index)];
      const w = el.offsetWidth;
      laneHeight = Math.max(laneHeight, el.offsetHeight);
      const centre = ((t.start_s + t.end_s) / 2 / view.duration) * width;
      const left = Math.min(Math.max(centre - w / 2, 0), Math.max(width - w, 0));
      const first = previous.right + 1 > left ? previous.lane + 1 : 0;
      let lane = first;
      while (lane < laneEnds.length && laneEnds[lane] + 1 > left) lane++;
      if (lane >= laneEnds.length) { lane = laneEnds.length; laneEnds.push(0); }
      laneEnds[lane] = left + w;
      previous = { lane, right: left + w };
      el.style.left = `${left.toFixed(1)}px`;
      el.style.top = `${lane * laneHeight}px`;
      el.dataset.lane = String(lane);
    });
    track.style.height = `${Math.max(laneEnds.length, 1) * laneHeight}px`;
  }

  function setRowLabels(box, tokens) {
    box.textContent = '';
    tokens.forEach((token) => {
      const el = document.createElement('span');
      el.textContent = label(token);
      el.title = token;
      box.appendChild(el);
    });
  }

  function setActive(k) {
    if (!view) return;
    view.active = k;
    const box = $('span-highlight');
    $('char-track').querySelectorAll('.char').forEach((el) => el.classList.toggle('active', Number(el.dataset.index) === k));
    $('char-track').dataset.active = String(k);
    const t = view.tokens[k];
    box.hidden = !t;
    if (t) {
      box.style.left = `${((t.start_s / view.duration) * 100).toFixed(3)}%`;
      box.style.width = `${(((t.end_s - t.start_s) / view.duration) * 100).toFixed(3)}%`;
      box.dataset.index = String(k);
    }
    drawPlots();
  }

  function redraw() {
    if (!view) return;
    layoutCharTrack();
    drawPlots();
  }

  // A canvas the width of its plot area and `rows` rows tall, drawn in device pixels.
  function sizeCanvas(canvas, rows, labels) {
    const rowPx = Math.max(7, Math.min(16, Math.floor(360 / rows)));
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.parentElement.clientWidth;
    canvas.style.height = `${rows * rowPx}px`;
    canvas.width = Math.max(1, Math.round(width * dpr));
    canvas.height = Math.max(1, Math.round(rows * rowPx * dpr));
    labels.style.height = `${rows * rowPx}px`;
    labels.style.fontSize = `${Math.min(rowPx - 2, 13)}px`;
    labels.classList.toggle('dense', rowPx < 10);
    const ctx = canvas.getContext('2d');
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    return { ctx, width, rowPx, height: rows * rowPx };
  }

  // matrix: rows x frames in [0, 1] -> an image of one pixel per (row, frame), made once per result
  function cellImage(name, matrix, colours, normaliseRows) {
    if (view.cells[name]) return view.cells[name];
    const rows = matrix.length;
    const frames = rows ? matrix[0].length : 0;
    const cells = document.createElement('canvas');
    cells.width = Math.max(frames, 1);
    cells.height = Math.max(rows, 1);
    if (frames) {
      const cctx = cells.getContext('2d');
      const image = cctx.createImageData(frames, rows);
      matrix.forEach((row, r) => {
        const scale = normaliseRows ? 1 / Math.max(Math.max(...row), 1e-6) : 1;
        row.forEach((v, t) => {
          const [red, green, blue] = ramp(colours, v * scale);
          const o = 4 * (r * frames + t);
          image.data[o] = red; image.data[o + 1] = green; image.data[o + 2] = blue; image.data[o + 3] = 255;
        });
      });
      cctx.putImageData(image, 0, 0);
    }
    view.cells[name] = { canvas: cells, frames };
    return view.cells[name];
  }

  // the cells, nearest-neighbour scaled onto the time axis (frame t at [t, t + 1) * encoder_frame_s)
  function drawCells(g, cells) {
    g.ctx.imageSmoothingEnabled = false;
    g.ctx.fillStyle = '#f4f5f8';
    g.ctx.fillRect(0, 0, g.width, g.height);
    if (cells.frames) g.ctx.drawImage(cells.canvas, 0, 0, cells.frames, cells.canvas.height, 0, 0,
                                      x(cells.frames * view.frameS, g), g.height);
  }

  const x = (seconds, g) => (seconds / view.duration) * g.width;

  function spanBox(g, row, t, colour, lineWidth) {
    const left = x(t.start_frame * view.frameS, g);
    const right = x(t.end_frame * view.frameS, g);
    g.ctx.strokeStyle = colour;
    g.ctx.lineWidth = lineWidth;
    g.ctx.strokeRect(left + 0.5, row * g.rowPx + 0.5, Math.max(right - left - 1, 1), g.rowPx - 1);
  }

  function activeBand(g) {
    const t = view.tokens[view.active];
    if (!t) return;
    g.ctx.fillStyle = 'rgba(255, 196, 0, 0.28)';
    g.ctx.fillRect(x(t.start_s, g), 0, Math.max(x(t.end_s, g) - x(t.start_s, g), 2), g.height);
  }

  function drawPlots() {
    const a = view && view.alignment;
    if (!a || !a.num_frames) return;
    drawPosteriorgram(a.posteriorgram);
    if (a.attention.weights.length) drawAttention(a.attention);
  }

  function drawPosteriorgram(p) {
    const canvas = $('posteriorgram');
    const g = sizeCanvas(canvas, p.tokens.length, $('posteriorgram-labels'));
    drawCells(g, cellImage('posteriorgram', p.probs, INK, false));
    activeBand(g);
    const rowOf = new Map(p.token_ids.map((id, r) => [id, r]));
    view.tokens.forEach((t, k) => {
      if (rowOf.has(t.token_id)) spanBox(g, rowOf.get(t.token_id), t, '#2f5fd0', k === view.active ? 3 : 1.5);
    });
    g.ctx.fillStyle = '#d33a2c';
    p.greedy_path.forEach((id, f) => {
      if (!rowOf.has(id)) return;
      g.ctx.beginPath();
      g.ctx.arc(x((f + 0.5) * view.frameS, g), (rowOf.get(id) + 0.5) * g.rowPx, Math.min(2.5, g.rowPx / 3), 0, 2 * Math.PI);
      g.ctx.fill();
    });
    canvas.dataset.drawn = 'true';
  }

  function drawAttention(att) {
    const canvas = $('attention');
    const g = sizeCanvas(canvas, att.rows.length, $('attention-labels'));
    drawCells(g, cellImage('attention', att.weights, VIRIDIS, true));
    const k = view.active;
    if (view.tokens[k]) {
      g.ctx.strokeStyle = 'rgba(255, 196, 0, 0.95)';
      g.ctx.lineWidth = 2;
      g.ctx.strokeRect(1, k * g.rowPx + 1, g.width - 2, g.rowPx - 2);
    }
    view.tokens.forEach((t, row) => spanBox(g, row, t, row === k ? '#ffffff' : 'rgba(120, 170, 255, 0.9)', row === k ? 2.5 : 1.2));
    canvas.dataset.drawn = 'true';
  }

  let resizePending = false;
  window.addEventListener('resize', () => {
    if (resizePending) return;
    resizePending = true;
    requestAnimationFrame(() => { resizePending = false; redraw(); });
  });

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
    // the live transcript (live.js) hears the same blocks while they are recorded
    recorder = { stream, ctx, node, chunks: [], samples: 0, live: window.LiveTranscript.start(ctx.sampleRate) };
    // the server's limit in samples: the last block is cut to it, so a recording that runs to the
    // auto-stop is at most maxSeconds long, never a block (2048 samples) past it
    const maxSamples = Math.floor(maxSeconds * ctx.sampleRate);
    node.port.onmessage = (event) => {
      if (!recorder) return;
      const block = event.data.samples.subarray(0, maxSamples - recorder.samples);
      recorder.chunks.push(block);
      recorder.live.push(block);
      recorder.samples += block.length;
      const seconds = recorder.samples / ctx.sampleRate;
      $('record-time').textContent = `${seconds.toFixed(1)} s`;
      showLevel(event.data.peak);
      if (recorder.samples >= maxSamples) stopRecording();
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
    rec.live.stop();
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
