// The page's spool: sealed chunks only, in the origin-private file system (OPFS), kept
// until the server has acknowledged them. Layout under `cloe/<attempt>/`: `consent.bin`
// (the consent sealed to the attempt), `streams.json` (the streams in the order they were
// opened, and each one's final index once sealed), `<stream>/<index>.chunk`. Nothing in
// clear is ever written: the chunk bytes are ciphertext, the rest ids and counts.

const pad = (i) => String(i).padStart(10, "0");
/** The fixed header and the tag: no sealed chunk is shorter. */
const MIN_CHUNK = 96 + 16;

export class Spool {
  #dir;
  #meta;

  static async open(attempt) {
    const root = await navigator.storage.getDirectory();
    const top = await root.getDirectoryHandle("cloe", { create: true });
    const dir = await top.getDirectoryHandle(attempt, { create: true });
    const s = new Spool(dir);
    s.#meta = (await s.#readJson("streams.json")) ?? { streams: [] };
    // Streams of an earlier page (reloaded, crashed) will never be sealed further: what
    // they hold goes up, and they stay without a final chunk ("ended abruptly", a gap).
    for (const x of s.#meta.streams) if (x.finalIndex === null) x.abandoned = true;
    // A write an earlier page did not finish (closed mid-write) left an empty file.
    for (const x of s.#meta.streams) {
      for (const index of await s.pending(x.id)) if ((await s.get(x.id, index)) === null) await s.remove(x.id, index);
    }
    return s;
  }

  constructor(dir) {
    this.#dir = dir;
  }

  async #readJson(name) {
    try {
      const f = await (await this.#dir.getFileHandle(name)).getFile();
      return JSON.parse(await f.text());
    } catch {
      return null;
    }
  }

  async #write(dir, name, bytes) {
    const w = await (await dir.getFileHandle(name, { create: true })).createWritable();
    await w.write(bytes);
    await w.close();
  }

  async #saveMeta() {
    await this.#write(this.#dir, "streams.json", JSON.stringify(this.#meta));
  }

  get streams() {
    return this.#meta.streams;
  }

  async putConsent(sealed) {
    await this.#write(this.#dir, "consent.bin", sealed);
  }

  async consent() {
    try {
      return new Uint8Array(await (await (await this.#dir.getFileHandle("consent.bin")).getFile()).arrayBuffer());
    } catch {
      return null;
    }
  }

  async dropConsent() {
    await this.#dir.removeEntry("consent.bin").catch(() => {});
  }

  async openStream(stream) {
    this.#meta.streams.push({ id: stream, finalIndex: null, ended: false });
    await this.#saveMeta();
    await this.#dir.getDirectoryHandle(stream, { create: true });
  }

  async put(stream, index, chunk) {
    await this.#write(await this.#dir.getDirectoryHandle(stream, { create: true }), `${pad(index)}.chunk`, chunk);
  }

  async sealedLast(stream, finalIndex) {
    const s = this.#meta.streams.find((x) => x.id === stream);
    if (s) s.finalIndex = finalIndex;
    await this.#saveMeta();
  }

  /** The server knows the stream ended: forget it. */
  async forgetStream(stream) {
    this.#meta.streams = this.#meta.streams.filter((x) => x.id !== stream);
    await this.#saveMeta();
    await this.#dir.removeEntry(stream, { recursive: true }).catch(() => {});
  }

  /** Indices waiting in a stream, in order. */
  async pending(stream) {
    const out = [];
    try {
      const d = await this.#dir.getDirectoryHandle(stream);
      for await (const name of d.keys()) if (name.endsWith(".chunk")) out.push(Number.parseInt(name, 10));
    } catch {}
    return out.sort((a, b) => a - b);
  }

  /**
   * A chunk's bytes, or null while it is being written: the browser creates the file empty
   * at once and swaps the written bytes in only when the writer closes, so an empty file
   * is one not finished yet (a sealed chunk is never shorter than its header and tag).
   */
  async get(stream, index) {
    const d = await this.#dir.getDirectoryHandle(stream);
    const f = await (await d.getFileHandle(`${pad(index)}.chunk`)).getFile();
    return f.size < MIN_CHUNK ? null : new Uint8Array(await f.arrayBuffer());
  }

  async remove(stream, index) {
    const d = await this.#dir.getDirectoryHandle(stream);
    await d.removeEntry(`${pad(index)}.chunk`).catch(() => {});
  }

  /** Everything of this attempt (a withdrawal, a destroyed recording). */
  async wipe() {
    const top = await (await navigator.storage.getDirectory()).getDirectoryHandle("cloe", { create: true });
    await top.removeEntry(this.#dir.name, { recursive: true });
    this.#meta = { streams: [] };
  }
}
