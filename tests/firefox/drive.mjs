// Firefox ESR through WebDriver BiDi (puppeteer-core), for `tests/tests/browser_agent.rs`:
// the browser agent's page with Firefox's fake camera and microphone. Usage:
//   node tests/firefox/drive.mjs record LINK SECONDS   consent → check → record → finish
//   node tests/firefox/drive.mjs refuse LINK           refusal only
//   node tests/firefox/drive.mjs unsupported LINK      WebCodecs switched off: what the page says
// Prints one JSON line: what the page showed. The Rust side checks the server.
import puppeteer from "puppeteer-core";

const [mode, link, seconds] = process.argv.slice(2);
const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath: "/usr/bin/firefox-esr",
  headless: true,
  extraPrefsFirefox: {
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
    // The server's data channel listens on loopback in the tests.
    "media.peerconnection.ice.loopback": true,
    ...(mode === "unsupported" ? { "dom.media.webcodecs.enabled": false } : {}),
  },
});
const out = {};
try {
  const page = await browser.newPage();
  if (process.env.DEBUG) { page.on("console", (m) => console.error("console:", m.type(), m.text())); page.on("pageerror", (e) => console.error("pageerror:", e.message)); }
  const phase = (p, timeout = 30_000) => page.waitForFunction((p) => document.body.dataset.phase === p, { timeout, polling: 200 }, p);
  await page.goto(link);
  if (mode === "unsupported") {
    await phase("unsupported");
    out.phase = "unsupported";
    out.message = await page.evaluate(() => document.body.innerText.slice(0, 600));
    out.missing = await page.evaluate(() => document.getElementById("unsupported-what").textContent);
    throw null;
  }
  await phase("notice");
  out.href = await page.evaluate(() => location.href);
  if (mode === "refuse") {
    await page.click("#refuse");
    await page.click("#refuse-yes");
    await phase("refused");
    await page.waitForFunction(() => document.getElementById("refused-body").textContent.startsWith("Rien n"), { timeout: 20_000 });
  } else {
    await page.click("#consent-box");
    await page.click("#accept");
    await phase("check");
    await page.waitForFunction(() => document.getElementById("preview").videoWidth > 0, { timeout: 20_000 });
    await page.waitForFunction(() => document.getElementById("encoder").textContent.includes("H.264"), { timeout: 20_000 });
    out.encoder = await page.evaluate(() => document.getElementById("encoder").textContent);
    await page.waitForFunction(() => !document.getElementById("start").disabled, { timeout: 20000 });
  await page.click("#start");
    await phase("recording");
    await new Promise((r) => setTimeout(r, Number(seconds) * 1000));
    if (process.env.DEBUG) console.error(await page.evaluate(() => JSON.stringify(window.__agent ? window.__agent() : null)));
    out.elapsed = await page.evaluate(() => document.getElementById("elapsed").textContent);
    await page.click("#finish");
    await page.click("#finish-yes");
    await phase("done", 120_000);
    out.progress = await page.evaluate(() => [document.getElementById("progress").value, document.getElementById("progress").max]);
  }
  out.phase = await page.evaluate(() => document.body.dataset.phase);
  out.message = await page.evaluate(() => document.body.innerText.slice(0, 400));
} catch (e) {
  if (e !== null) out.error = String(e && e.stack ? e.stack : e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
