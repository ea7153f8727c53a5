// Firefox ESR through WebDriver BiDi (puppeteer-core), for `tests/tests/browser_agent.rs`:
// the browser agent's page with Firefox's fake camera and microphone.
//
//   node firefox/drive.mjs MODE LINK [SECONDS]
//
// MODE: record (consent → check → record SECONDS → finish), refuse, withdraw, unsupported
// (WebCodecs switched off), hidden (another tab in front for SECONDS while recording),
// reload (F5 while recording, the resume click, then finish), wait (prints
// {"event":"notice"}, then {"event":"recording"}, each time waiting for a line on stdin:
// the Rust side stops and restarts the server meanwhile; then the backlog and finish),
// ended (prints {"event":"recording"}, waits for a line, then until the platform's end).
// Prints one JSON line at the end: what the page showed. The Rust side checks the server.
// FIREFOX_PROFILE: the profile's directory, kept after the run (the Rust side scans it);
// otherwise a throwaway one. Certificates are not checked: the fault suite's server has a
// self-signed one on the host side of the namespace's veth (a secure context all the same).
import puppeteer from "puppeteer-core";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";

/** axe-core's WCAG 2.1 A and AA rules on the page as it is: the violations' ids. */
const AXE = readFileSync(new URL("../node_modules/axe-core/axe.min.js", import.meta.url), "utf8");
async function accessibility(page) {
  return page.evaluate(async (src) => {
    (0, eval)(src);
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return r.violations.map((v) => v.id);
  }, AXE);
}

const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** Says what happened and waits for the Rust side to say "go on". */
async function handshake(event) {
  console.log(JSON.stringify({ event }));
  await lines.next();
}

const [mode, link, seconds = "8"] = process.argv.slice(2);
const sleep = (s) => new Promise((r) => setTimeout(r, s * 1000));
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: "/usr/bin/firefox-esr",
  headless: true,
  acceptInsecureCerts: true,
  ...(process.env.FIREFOX_PROFILE ? { userDataDir: process.env.FIREFOX_PROFILE } : {}),
  extraPrefsFirefox: {
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
    ...(mode === "unsupported" ? { "dom.media.webcodecs.enabled": false } : {}),
  },
});
const out = {};
try {
  const page = await browser.newPage();
  // The page asks before leaving while anything is left to send; the candidate confirms.
  page.on("dialog", (d) => d.accept().catch(() => {}));
  if (process.env.DEBUG) {
    page.on("console", (m) => console.error("console:", m.type(), m.text()));
    page.on("pageerror", (e) => console.error("pageerror:", e.message));
  }
  const phase = (p, timeout = 30_000) => page.waitForFunction((p) => document.body.dataset.phase === p, { timeout, polling: 200 }, p);
  const text = (id) => page.evaluate((id) => document.getElementById(id).textContent, id);
  const agent = () => page.evaluate(() => window.__agent());
  const record = async () => {
    await page.click("#consent-box");
    await page.click("#accept");
    await phase("check");
    await page.waitForFunction(() => document.getElementById("preview").videoWidth > 0, { timeout: 20_000 });
    await page.waitForFunction(() => document.getElementById("encoder").textContent.includes("H.264"), { timeout: 20_000 });
    await page.waitForFunction(() => !document.getElementById("start").disabled, { timeout: 20_000 });
    out.encoder = await text("encoder");
    await page.click("#start");
    await phase("recording");
  };
  const finish = async () => {
    out.elapsed = await text("elapsed");
    await page.click("#finish");
    await page.click("#finish-yes");
    await phase("done", 120_000);
    out.progress = await page.evaluate(() => [document.getElementById("progress").value, document.getElementById("progress").max]);
  };

  await page.goto(link);
  if (mode === "unsupported") {
    await phase("unsupported");
    out.missing = await text("unsupported-what");
    out.axe = await accessibility(page);
  } else {
    await phase("notice");
    out.href = await page.evaluate(() => location.href);
    if (mode === "wait") await handshake("notice");
    if (mode === "refuse") {
      await page.click("#refuse");
      await page.click("#refuse-yes");
      await phase("refused");
      await page.waitForFunction(() => document.getElementById("refused-body").textContent.startsWith("Rien n"), { timeout: 20_000 });
    } else {
      await record();
      if (mode === "withdraw") {
        await sleep(Number(seconds));
        await page.click("#withdraw");
        await page.click("#withdraw-yes");
        await phase("withdrawn");
        await page.waitForFunction(() => document.getElementById("withdrawn-body").textContent.startsWith("L'enregistrement est arrêté et votre retrait"), { timeout: 30_000 });
        await page.waitForFunction(() => !document.getElementById("withdrawn-receipt").hidden, { timeout: 30_000 });
        out.receipt = await page.evaluate(() => document.getElementById("withdrawn-receipt").textContent);
        out.spooled = await page.evaluate(async () => {
          const names = [];
          const walk = async (d, p) => {
            for await (const [k, h] of d.entries()) h.kind === "file" ? names.push(p + k) : await walk(h, p + k + "/");
          };
          await walk(await navigator.storage.getDirectory(), "");
          return names;
        });
      } else if (mode === "ended") {
        await handshake("recording");
        await phase("done", 120_000);
        out.endedByPlatform = await page.evaluate(() => !document.getElementById("ended-by-platform").hidden);
      } else {
        if (mode === "hidden") {
          await sleep(4);
          const exam = await browser.newPage();
          await exam.goto(new URL("/health", link).href);
          await exam.bringToFront();
          await sleep(Number(seconds));
          out.hiddenWhileAway = await page.evaluate(() => document.visibilityState);
          await exam.close();
          await page.bringToFront();
        } else if (mode === "reload") {
          await sleep(Number(seconds));
          await page.reload();
          await phase("resume");
          out.axe = await accessibility(page);
          await page.click("#resume");
          await phase("recording");
          out.resumed = await text("message");
          await sleep(8);
        } else if (mode === "wait") {
          await handshake("recording");
          await page.waitForFunction(() => { const a = window.__agent(); return a.acked >= a.sealed - 1 && !a.offline; }, { timeout: 60_000, polling: 500 });
          await sleep(4);
        } else {
          await sleep(Number(seconds));
        }
        out.agent = await agent();
        await finish();
      }
    }
  }
  out.phase = await page.evaluate(() => document.body.dataset.phase);
  out.message = await page.evaluate(() => document.body.innerText.slice(0, 600));
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
process.exit(0);
