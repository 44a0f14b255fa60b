// Runs on the audio thread: mixes the microphone to mono and posts it to the page in blocks of
// BLOCK samples (about 43 ms at 48 kHz), with the block's peak level for the meter.
const BLOCK = 2048;

class RecorderProcessor extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(BLOCK);
    this.filled = 0;
    this.peak = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length > 0) {
      const n = channels[0].length;
      for (let i = 0; i < n; i++) {
        let v = 0;
        for (let c = 0; c < channels.length; c++) v += channels[c][i];
        v /= channels.length;
        this.block[this.filled++] = v;
        const a = Math.abs(v);
        if (a > this.peak) this.peak = a;
        if (this.filled === BLOCK) this.post();
      }
    }
    return true; // keep running until the page disconnects the node
  }

  post() {
    this.port.postMessage({ samples: this.block, peak: this.peak }, [this.block.buffer]);
    this.block = new Float32Array(BLOCK);
    this.filled = 0;
    this.peak = 0;
  }
}

registerProcessor('recorder', RecorderProcessor);
