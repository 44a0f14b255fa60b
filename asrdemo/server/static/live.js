// Live transcript while recording: the recorder's PCM blocks go to the WebSocket api/stream as
// 16-bit samples (the same conversion as the WAV the page uploads at the end), the server's
// partial text is shown as it grows, and its final (two-pass) text when the recording stops.
// The full result with its views still comes from api/recognize (app.js). Protocol: docs/demo.md.
window.LiveTranscript = (() => {
  'use strict';

  const $ = (id) => document.getElementById(id);

  function show(text, state, note) {
    const box = $('live-card');
    box.hidden = false;
    box.dataset.state = state;
    $('live-text').textContent = text;
    if (note !== undefined) $('live-note').textContent = note;
  }

  function toInt16(samples) {
    const out = new Int16Array(samples.length);
    for (let i = 0; i < samples.length; i++) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
    }
    return out;
  }

  // -> {push(Float32Array), stop()}; never throws: without a stream the page records as before.
  function start(sampleRate) {
    const url = new URL(`api/stream?sample_rate=${Math.round(sampleRate)}`, document.baseURI);
    url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
    const queued = []; // blocks recorded before the server said "ready": sent then, in order
    let ws = null;
    let ready = false;
    let ending = false; // stop() came before "ready": "end" follows the queued blocks
    let finished = false;
    let partials = 0;
    show('…', 'connecting', '');
    try {
      ws = new WebSocket(url);
    } catch (err) {
      show('', 'error', `ライブ表示なし / no live transcript: ${err.message}`);
      return { push() {}, stop() {} };
    }
    ws.binaryType = 'arraybuffer';
    ws.onmessage = (event) => {
      const m = JSON.parse(event.data);
      if (m.type === 'ready') {
        ready = true;
        show('…', 'live', m.streaming_model ? ''
          : 'このモデルはストリーミング用に学習されていません（ライブ表示は不正確です） / '
            + 'this model was not trained for streaming: the live text is approximate');
        queued.splice(0).forEach((block) => ws.send(block));
        if (ending) ws.send(JSON.stringify({ type: 'end' }));
      } else if (m.type === 'partial') {
        partials += 1;
        $('live-card').dataset.partials = String(partials);
        show(m.text || '…', 'live');
      } else if (m.type === 'final') {
        finished = true;
        show(m.text, 'final');
        $('live-card').dataset.finishS = String(m.finish_s);
        $('live-card').dataset.durationS = String(m.duration_s); // the audio the stream heard
      } else if (m.type === 'error') {
        finished = true;
        show($('live-text').textContent, 'error', `ライブ表示の停止 / live transcript stopped: ${m.error}`);
      }
    };
    ws.onerror = () => {
      if (!finished) show($('live-text').textContent, 'error', 'ライブ表示に接続できません / no live transcript (connection failed)');
    };
    return {
      push(samples) {
        if (finished || ending || ws.readyState > WebSocket.OPEN) return;
        const block = toInt16(samples).buffer;
        if (ready) ws.send(block);
        else queued.push(block); // connecting, or open and waiting for "ready"
      },
      stop() {
        if (finished || ws.readyState > WebSocket.OPEN) return;
        if (ready) ws.send(JSON.stringify({ type: 'end' }));
        else ending = true;
      },
    };
  }

  return { start };
})();
