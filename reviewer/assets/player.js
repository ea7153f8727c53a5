// The reviewer's player. Media Source Extensions fed one decrypted fragment at a time by
// the server: a seek fetches only the fragments around the new position, a few more are
// prefetched ahead (more at higher speeds), old ones are evicted. Chromium stalls at a
// hole in `buffered`, so the player jumps holes itself (missing or altered fragments,
// time between streams) and says so; the timeline draws every one with its reason.
(() => {
  'use strict';
  const T = JSON.parse(document.getElementById('text').textContent);
  const attempt = document.body.dataset.attempt;
  const csrf = document.body.dataset.csrf;
  const api = `/api/staff/v1/attempts/${attempt}`;
  const $ = (id) => document.getElementById(id);
  const video = $('video');
  // What the native agent records; a stream's own codecs come from its init segment.
  const DEFAULT_MIME = 'video/mp4; codecs="avc1.42C016, mp4a.40.2"';
  const FRAME_S = 1 / 15; // the agent records 15 frames per second
  let tl = null;        // the timeline from the server
  let streams = [];     // per stream: { id, origin, wallStart, wallEnd, frags: [{ i, s, e, state }] }
  let cur = null;       // the stream loaded in the MediaSource: { si, st, ms, sb, chain }
  let review = null;    // flags and rounds
  let canWrite = false;
  let noticeTimer = null;

  const label = (list, code) => (list.find(([c]) => c === code) || [code, code])[1];
  const hms = (wall) => new Date(wall).toLocaleTimeString('fr-FR', { hour12: false });
  const notice = (msg) => {
    $('notice').textContent = msg;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { $('notice').textContent = ''; }, 4000);
  };
  let jumps = 0;
  const jumped = () => { jumps += 1; notice(T.jumped_hole); };
  const fail = (msg) => { const e = $('error'); e.hidden = false; e.textContent = `${T.error_prefix} : ${msg}`; };

  async function call(method, path, body) {
    const headers = { 'X-CSRF-Token': csrf };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const r = await fetch(api + path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401) { location.href = '/'; throw new Error('session ended'); }
    return r;
  }

  // ---- Timeline model -------------------------------------------------------------
  function build(t) {
    streams = t.streams.map((s) => {
      const broken = new Set(s.broken);
      const frags = s.fragments.map(([i, fs, fe, got]) => ({ i, s: fs, e: fe, got, state: broken.has(i) ? 'altered' : 'idle' }));
      const wallStart = s.origin_ms + (frags.length ? frags[0].s : 0);
      const wallEnd = s.origin_ms + (frags.length ? Math.max(...frags.map((f) => f.e)) : 0);
      return { id: s.stream_id, origin: s.origin_ms, status: s.status, hasInit: s.has_init, frags, wallStart, wallEnd, late: s.received_after_end_ms || 0 };
    }).filter((s) => s.frags.length && s.hasInit);
  }
  // Neither altered (refused by the server's checks) nor missing (gone from the store).
  const playable = (f) => f.state !== 'altered' && f.state !== 'missing';
  const fragAt = (st, m) => st.frags.find((f) => playable(f) && m >= f.s && m < f.e);
  const nextPlayable = (st, m) => st.frags.find((f) => playable(f) && f.s >= m - 1);
  const wallNow = () => (cur ? cur.st.origin + video.currentTime * 1000 : (streams[0] ? streams[0].wallStart : 0));

  // ---- Codecs ---------------------------------------------------------------------------
  // The native agent records H.264 + AAC, the browser agent H.264 + Opus: each stream's
  // MSE type is read from the sample entries of its init segment (moov/trak/.../stsd). A
  // walk over a handful of boxes: a demuxer library would be 50 times this page's script.
  function codecsOf(buf) {
    const d = new DataView(buf);
    const u8 = new Uint8Array(buf);
    const type = (o) => String.fromCharCode(u8[o + 4], u8[o + 5], u8[o + 6], u8[o + 7]);
    const hex2 = (b) => b.toString(16).padStart(2, '0').toUpperCase();
    const out = [];
    const boxes = (start, end, f) => {
      for (let o = start; o + 8 <= end;) {
        let size = d.getUint32(o);
        if (size === 0) size = end - o;
        if (size < 8 || o + size > end) return;
        f(type(o), o + 8, o + size);
        o += size;
      }
    };
    const esdsCodec = (start, end) => {
      // ES_Descriptor (0x03) > DecoderConfigDescriptor (0x04): object type; > 0x05: the AAC object type.
      let oti = null;
      for (let o = start + 4; o < end;) {
        const tag = u8[o++];
        let len = 0;
        for (let k = 0; k < 4; k++) { const b = u8[o++]; len = (len << 7) | (b & 0x7f); if (!(b & 0x80)) break; }
        if (tag === 0x03) { const flags = u8[o + 2]; o += 3 + (flags & 0x80 ? 2 : 0) + (flags & 0x40 ? 1 + u8[o + 3] : 0) + (flags & 0x20 ? 2 : 0); continue; }
        if (tag === 0x04) { oti = u8[o]; o += 13; continue; }
        if (tag === 0x05 && oti === 0x40) return `mp4a.40.${u8[o] >> 3}`;
        o += len;
      }
      return oti === null ? null : `mp4a.${hex2(oti).toLowerCase()}`;
    };
    const entries = (start, end) => boxes(start + 8, end, (t, b, e) => {
      if (t === 'avc1' || t === 'avc3') {
        boxes(b + 78, e, (ct, cb) => { if (ct === 'avcC') out.push(`${t}.${hex2(u8[cb + 1])}${hex2(u8[cb + 2])}${hex2(u8[cb + 3])}`); });
      } else if (t === 'mp4a') {
        boxes(b + 28, e, (ct, cb, ce) => { if (ct === 'esds') { const c = esdsCodec(cb, ce); if (c) out.push(c); } });
      } else if (t === 'Opus') out.push('opus');
    });
    const walk = (start, end) => boxes(start, end, (t, b, e) => {
      if (['moov', 'trak', 'mdia', 'minf', 'stbl'].includes(t)) walk(b, e);
      else if (t === 'stsd') entries(b, e);
    });
    try { walk(0, u8.length); } catch (e) { return null; }
    return out.length ? `video/mp4; codecs="${out.join(', ')}"` : null;
  }

  // ---- Media ------------------------------------------------------------------------
  async function fragment(st, i) {
    const r = await call('GET', `/streams/${st.id}/fragments/${i}`);
    if (r.ok) return r.arrayBuffer();
    const f = st.frags.find((x) => x.i === i);
    if (r.status === 422 && f) { f.state = 'altered'; drawTimeline(); }
    if (r.status === 404 && f) { f.state = 'missing'; drawTimeline(); }
    if (r.status === 410) fail(T.altered_fragment);
    return null;
  }

  function append(c, buf) {
    c.chain = c.chain.then(() => new Promise((resolve) => {
      if (c !== cur || c.ms.readyState !== 'open') return resolve(false);
      const done = () => { c.sb.removeEventListener('updateend', done); c.sb.removeEventListener('error', done); resolve(true); };
      c.sb.addEventListener('updateend', done);
      c.sb.addEventListener('error', done);
      try { c.sb.appendBuffer(buf); } catch (e) { resolve(false); }
    }));
    return c.chain;
  }

  async function openStream(si) {
    if (cur && cur.si === si) return cur;
    const st = streams[si];
    const ms = new MediaSource();
    const c = { si, st, ms, sb: null, chain: Promise.resolve() };
    cur = c;
    for (const f of st.frags) if (playable(f)) f.state = 'idle';
    // A new source resets the rate to the default one: the reviewer's choice is kept there.
    video.src = URL.createObjectURL(ms);
    video.playbackRate = video.defaultPlaybackRate;
    const [init] = await Promise.all([fragment(st, 0), new Promise((r) => ms.addEventListener('sourceopen', r, { once: true }))]);
    const mime = (init && codecsOf(init)) || DEFAULT_MIME;
    c.mime = mime;
    if (!MediaSource.isTypeSupported(mime)) fail(`${T.altered_fragment} (${mime})`);
    c.sb = ms.addSourceBuffer(mime);
    c.sb.mode = 'segments';
    if (init) await append(c, init);
    // Chromium clamps a seek to the duration, which otherwise grows only as fragments are
    // appended: say at once how long the stream is, so a seek ahead is not cut short.
    const end = Math.max(...st.frags.map((f) => f.e)) / 1000;
    if (c === cur && ms.readyState === 'open' && !c.sb.updating && end > 0) ms.duration = end;
    return c;
  }

  // Fetches and appends one fragment. Whatever goes wrong (network, 5xx), the fragment
  // goes back to 'idle' and `ensure` asks for it again on a later tick.
  async function load(c, f) {
    f.state = 'loading';
    let buf = null;
    try {
      buf = await fragment(c.st, f.i);
    } catch (e) {
      buf = null;
    }
    if (!buf || c !== cur) {
      if (f.state === 'loading') f.state = 'idle';
      return;
    }
    await append(c, buf);
    if (f.state === 'loading') f.state = c === cur ? 'done' : 'idle';
  }

  function ensure() {
    const c = cur;
    if (!c || !c.sb) return;
    const t = video.currentTime * 1000;
    const rate = video.playbackRate;
    const ahead = 4000 + 2500 * rate;
    const inFlight = c.st.frags.filter((f) => f.state === 'loading').length;
    const want = c.st.frags.filter((f) => f.state === 'idle' && f.e > t - 50 && f.s < t + ahead);
    for (const f of want.slice(0, Math.max(0, 2 + Math.ceil(rate) - inFlight))) load(c, f);
    // Evict what is well behind: memory stays bounded over hours.
    const keepFrom = t / 1000 - 60;
    if (keepFrom > 0 && c.sb.buffered.length && c.sb.buffered.start(0) < keepFrom - 10) {
      c.chain = c.chain.then(() => new Promise((resolve) => {
        if (c !== cur || c.sb.updating) return resolve();
        c.sb.addEventListener('updateend', resolve, { once: true });
        try { c.sb.remove(0, keepFrom); } catch (e) { resolve(); }
      }));
      // Anything starting before the cut lost at least part of its data.
      for (const f of c.st.frags) if (f.state === 'done' && f.s / 1000 < keepFrom) f.state = 'idle';
    }
  }

  // Seek to a wall-clock time: into the stream that covers it, or the next stream
  // after a gap; a missing fragment there moves on to the next playable one.
  async function seekWall(w, why) {
    let si = streams.findIndex((s) => w >= s.wallStart && w < s.wallEnd);
    if (si < 0) {
      si = streams.findIndex((s) => s.wallStart > w);
      if (si < 0) { video.pause(); return; }
      w = streams[si].wallStart;
      if (why !== 'start') jumped();
    }
    const st = streams[si];
    let m = w - st.origin;
    if (!fragAt(st, m)) {
      const f = nextPlayable(st, m);
      if (!f) return seekWall(st.wallEnd + 1, why);
      m = f.s;
      if (why !== 'start') jumped();
    }
    const c = await openStream(si);
    video.currentTime = m / 1000 + 0.001;
    ensure();
    return c;
  }

  // Chromium stalls at the edge of a hole in `buffered`: when playback has not moved for
  // a moment and no data is ahead, look at what comes next. A fragment on its way: wait.
  // A hole (missing or altered fragments, the end of a stream): jump to what plays next.
  let jumping = false;
  let lastT = -1;
  let stalledSince = 0;
  function jumpHoles() {
    const now = performance.now();
    if (jumping || !cur || video.paused || video.seeking || video.currentTime !== lastT) {
      lastT = video.currentTime;
      stalledSince = now;
      return;
    }
    if (now - stalledSince < 300) return;
    const st = cur.st;
    const m = video.currentTime * 1000;
    let end = m;
    for (let i = 0; i < video.buffered.length; i += 1) {
      if (video.buffered.start(i) * 1000 <= m + 1 && video.buffered.end(i) * 1000 >= m) end = video.buffered.end(i) * 1000;
    }
    if (end - m > 400 * video.playbackRate) return; // data ahead: the decoder is catching up
    const next = st.frags.find((f) => playable(f) && f.e > end + 50);
    if (next && next.s <= end + 100) return; // the next fragment is on its way
    jumping = true;
    if (next) jumped();
    seekWall(next ? st.origin + next.s : st.wallEnd + 1, 'hole')
      .then(() => video.play().catch(() => {}))
      .finally(() => { jumping = false; });
  }

  // ---- Drawing ------------------------------------------------------------------------
  function drawTimeline() {
    const bar = $('timeline');
    for (const el of Array.from(bar.querySelectorAll('.seg, .flag'))) el.remove();
    const span = Math.max(1, tl.end_ms - tl.start_ms);
    const pct = (w) => `${((w - tl.start_ms) / span) * 100}%`;
    const seg = (cls, from, to, title) => {
      const d = document.createElement('div');
      d.className = `seg ${cls}`;
      d.style.left = pct(from);
      if (to !== null) d.style.width = `${Math.max(0.15, ((to - from) / span) * 100)}%`;
      d.title = title;
      bar.appendChild(d);
    };
    for (const g of tl.gaps) seg('gap', g.from_ms, g.to_ms, T.gap_agent_off);
    for (const st of streams) {
      seg('rec', st.wallStart, st.wallEnd, '');
      let prev = null;
      for (const f of st.frags) {
        if (prev && f.i !== prev.i + 1) seg('missing', st.origin + prev.e, st.origin + f.s, `${T.missing_fragments} (${prev.i + 1}–${f.i - 1})`);
        if (f.state === 'altered') seg('altered', st.origin + f.s, st.origin + f.e, `${T.altered_fragment} (${f.i})`);
        if (f.state === 'missing') seg('missing', st.origin + f.s, st.origin + f.e, `${T.missing_fragments} (${f.i})`);
        prev = f;
      }
      if (st.status === 'ended_abruptly') seg('abrupt', st.wallEnd, null, T.ended_abruptly);
      // Provenance: the runs of fragments that reached the server after the exam's end,
      // each with how late its last one arrived.
      if (st.late > 0 && tl.ended_ms) {
        let run = null;
        const close = () => { if (run) seg('late', st.origin + run.s, st.origin + run.e, `${T.late_upload} (+${Math.ceil((run.got - tl.ended_ms) / 60000)} min)`); run = null; };
        for (const f of st.frags) {
          if (f.got > tl.ended_ms) run = run ? { s: run.s, e: f.e, got: Math.max(run.got, f.got) } : { s: f.s, e: f.e, got: f.got };
          else close();
        }
        close();
      }
    }
    for (const fl of (review ? review.flags : [])) {
      const d = document.createElement('div');
      d.className = 'flag';
      d.style.left = pct(fl.start_ms);
      d.style.width = `${Math.max(0.3, ((fl.end_ms - fl.start_ms) / span) * 100)}%`;
      d.title = label(T.categories, fl.category);
      bar.appendChild(d);
    }
  }

  function tick() {
    if (!tl) return;
    const w = wallNow();
    const span = Math.max(1, tl.end_ms - tl.start_ms);
    const p = Math.min(100, Math.max(0, ((w - tl.start_ms) / span) * 100));
    $('playhead').style.left = `${p}%`;
    $('timeline').setAttribute('aria-valuenow', String(Math.round(p)));
    $('clock').textContent = hms(w);
    $('play').textContent = video.paused ? T.play : T.pause;
    ensure();
    jumpHoles();
    skipQuiet();
  }

  // ---- Activity strip, quiet stretches, thumbnails ------------------------------------
  // Per recorded second, motion and sound as the candidate's agent measured them: no
  // face analysis, no score. A second is "quiet" below both thresholds.
  const QUIET_MOTION = 8;
  const QUIET_AUDIO = 20;
  let activity = [];
  let activityWithout = 0; // fragments that carried none (for the tests)
  const quiet = (p) => p[1] < QUIET_MOTION && p[2] < QUIET_AUDIO;

  async function loadActivity() {
    const r = await call('GET', '/activity');
    if (!r.ok) return;
    const strip = await r.json();
    activity = strip.points;
    activityWithout = strip.fragments_without;
    drawActivity();
  }

  function drawActivity() {
    const canvas = $('activity');
    const ctx = canvas.getContext('2d');
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    const span = Math.max(1, tl.end_ms - tl.start_ms);
    const bar = Math.max(1, (1000 / span) * w);
    for (const [wall, motion, audio] of activity) {
      const x = ((wall - tl.start_ms) / span) * w;
      ctx.fillStyle = '#0b4f9c';
      ctx.fillRect(x, h / 2 - (motion / 100) * (h / 2), bar, (motion / 100) * (h / 2));
      ctx.fillStyle = '#1b5e20';
      ctx.fillRect(x, h / 2, bar, (audio / 100) * (h / 2));
    }
  }

  let skipping = false;
  function skipQuiet() {
    if (!$('skip-quiet').checked || skipping || video.paused || !activity.length) return;
    const w = wallNow();
    const here = activity.find((p) => p[0] <= w && w < p[0] + 1000);
    if (!here || !quiet(here)) return;
    const next = activity.find((p) => p[0] > w && !quiet(p));
    skipping = true;
    jumps += 1;
    seekWall(next ? next[0] : tl.end_ms + 1, 'quiet').then(() => video.play().catch(() => {})).finally(() => { skipping = false; });
  }

  let thumbTimer = null;
  let thumbUrl = null;
  function showThumb(e) {
    const box = $('timeline').getBoundingClientRect();
    const x = e.clientX - box.left;
    const w = tl.start_ms + (x / box.width) * (tl.end_ms - tl.start_ms);
    clearTimeout(thumbTimer);
    thumbTimer = setTimeout(async () => {
      const st = streams.find((s) => w >= s.wallStart && w < s.wallEnd);
      const f = st && fragAt(st, w - st.origin);
      if (!f) { $('thumb').hidden = true; return; }
      const r = await call('GET', `/streams/${st.id}/fragments/${f.i}/thumbnail`);
      if (!r.ok) { $('thumb').hidden = true; return; }
      if (thumbUrl) URL.revokeObjectURL(thumbUrl);
      thumbUrl = URL.createObjectURL(await r.blob());
      const img = $('thumb');
      img.src = thumbUrl;
      img.style.left = `${x}px`;
      img.hidden = false;
    }, 150);
  }
  $('timeline').addEventListener('mousemove', showThumb);
  $('timeline').addEventListener('mouseleave', () => { clearTimeout(thumbTimer); $('thumb').hidden = true; });

  // ---- Flags and review ---------------------------------------------------------------
  async function loadReview() {
    const r = await call('GET', '/review');
    if (!r.ok) { fail((await r.json()).message); return; }
    review = await r.json();
    canWrite = review.my_round !== null || review.rounds.length === 0;
    const list = $('flags');
    list.textContent = '';
    for (const fl of review.flags) {
      const li = document.createElement('li');
      const go = document.createElement('a');
      go.href = '#';
      go.textContent = `${hms(fl.start_ms)}–${hms(fl.end_ms)} · ${label(T.categories, fl.category)} · ${label(T.severities, fl.severity)}`;
      go.addEventListener('click', (e) => { e.preventDefault(); seekWall(fl.start_ms, 'flag'); });
      li.appendChild(go);
      if (fl.note) li.appendChild(document.createTextNode(` — ${fl.note}`));
      if (fl.editable && canWrite) {
        const edit = document.createElement('button');
        edit.textContent = T.edit;
        edit.addEventListener('click', () => openFlagForm(fl));
        li.appendChild(edit);
        const del = document.createElement('button');
        del.textContent = T.delete;
        del.addEventListener('click', async () => {
          const r2 = await call('DELETE', `/flags/${fl.id}`);
          if (!r2.ok) fail((await r2.json()).message);
          await loadReview();
        });
        li.appendChild(del);
      }
      list.appendChild(li);
    }
    $('add-flag').hidden = !canWrite;
    $('submit-box').hidden = !canWrite;
    $('read-only').hidden = canWrite || !review.rounds.length;
    $('submitted').hidden = canWrite || !review.rounds.some((r) => r.submitted_at_ms);
    drawTimeline();
  }

  let flagFrom = 0;
  let flagTo = 0;
  let editing = null; // the id of the flag being edited, or null for a new one
  function openFlagForm(existing) {
    if (!canWrite) return;
    video.pause();
    editing = existing && existing.id ? existing.id : null;
    flagFrom = editing ? existing.start_ms : Math.round(wallNow());
    flagTo = editing ? existing.end_ms : flagFrom + 5000;
    $('flag-start').value = hms(flagFrom);
    $('flag-end').value = hms(flagTo);
    $('flag-category').value = editing ? existing.category : $('flag-category').options[0].value;
    $('flag-severity').value = editing ? existing.severity : $('flag-severity').options[0].value;
    $('flag-note').value = editing ? existing.note : '';
    $('flag-form').hidden = false;
    $('flag-category').focus();
  }

  $('flag-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { start_ms: flagFrom, end_ms: flagTo, category: $('flag-category').value, severity: $('flag-severity').value, note: $('flag-note').value };
    const r = editing ? await call('PUT', `/flags/${editing}`, body) : await call('POST', '/flags', body);
    if (!r.ok) { fail((await r.json()).message); return; }
    $('flag-form').hidden = true;
    $('flag-note').value = '';
    editing = null;
    await loadReview();
    $('add-flag').focus();
  });
  $('flag-cancel').addEventListener('click', () => { $('flag-form').hidden = true; });
  $('add-flag').addEventListener('click', () => openFlagForm(null));

  for (const [id, outcome] of [['submit-none', 'no_irregularity'], ['submit-irregularities', 'irregularities']]) {
    $(id).addEventListener('click', async () => {
      const r = await call('POST', '/review/submit', { outcome });
      if (!r.ok) { fail((await r.json()).message); return; }
      $('error').hidden = true;
      await loadReview();
    });
  }

  // ---- Controls -------------------------------------------------------------------------
  const toggle = () => { if (video.paused) video.play().catch(() => {}); else video.pause(); };
  $('play').addEventListener('click', toggle);
  $('speed').addEventListener('change', () => {
    video.defaultPlaybackRate = video.playbackRate = Number($('speed').value);
    ensure();
  });
  video.addEventListener('ratechange', () => { $('speed').value = String(video.playbackRate); });
  $('timeline').addEventListener('click', (e) => {
    const box = e.currentTarget.getBoundingClientRect();
    seekWall(tl.start_ms + ((e.clientX - box.left) / box.width) * (tl.end_ms - tl.start_ms), 'click');
  });
  const flagStarts = () => (review ? review.flags.map((f) => f.start_ms).sort((a, b) => a - b) : []);
  document.addEventListener('keydown', (e) => {
    if (e.target.closest('input, textarea, select, form') || e.ctrlKey || e.metaKey || e.altKey) return;
    const w = wallNow();
    switch (e.key) {
      case ' ': case 'k': toggle(); break;
      case 'ArrowLeft': seekWall(w - 5000, 'key'); break;
      case 'ArrowRight': seekWall(w + 5000, 'key'); break;
      case ',': if (video.paused) video.currentTime = Math.max(0, video.currentTime - FRAME_S); break;
      case '.': if (video.paused) video.currentTime += FRAME_S; break;
      case 'n': { const n = flagStarts().find((s) => s > w + 500); if (n !== undefined) seekWall(n, 'flag'); break; }
      case 'p': { const p = flagStarts().reverse().find((s) => s < w - 500); if (p !== undefined) seekWall(p, 'flag'); break; }
      case 'f': openFlagForm(null); break;
      default: return;
    }
    e.preventDefault();
  });

  (async () => {
    const r = await call('GET', '/timeline');
    if (!r.ok) { fail((await r.json()).message); return; }
    tl = await r.json();
    build(tl);
    await loadReview();
    loadActivity();
    if (streams.length) await seekWall(streams[0].wallStart, 'start');
    // For the browser tests: where the player is, read-only.
    window.__player = () => ({ stream: cur ? cur.si : null, mime: cur ? cur.mime : null, t: video.currentTime, wall: wallNow(), paused: video.paused, rate: video.playbackRate, notice: $('notice').textContent, jumps, activity: activity.length, activityWithout, moving: activity.filter((p) => p[1] > 0).length, sounding: activity.filter((p) => p[2] > 0).length, seeking: video.seeking, jumping, ready: video.readyState,
      frags: cur ? cur.st.frags.map((f) => [f.i, f.s, f.e, f.state]) : [],
      buffered: Array.from({ length: video.buffered.length }, (_, i) => [video.buffered.start(i), video.buffered.end(i)]) });
    setInterval(tick, 200);
    tick();
  })();
})();
