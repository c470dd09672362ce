// The customers' chat page as a customer uses it: type each message, wait for the page to settle, then
// (with --await-person) wait for a person's reply to appear; print what the page shows as JSON and keep a
// screenshot.
// usage: node support.mjs URL SCREENSHOT.png [--await-person] MESSAGE [MESSAGE...]
import { chromium } from "playwright-core";

const [url, shot, ...rest] = process.argv.slice(2);
const awaitPerson = rest[0] === "--await-person";
const messages = awaitPerson ? rest.slice(1) : rest;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ locale: "zh-CN", viewport: { width: 800, height: 1000 } });
  await page.goto(url);
  await page.waitForSelector(".msg.bot");
  for (const m of messages) {
    const before = await page.locator(".msg").count();
    await page.fill("#text", m);
    await page.press("#text", "Enter");
    // The customer's bubble, then the answer (or the note of a handoff).
    await page.waitForFunction((n) => document.querySelectorAll(".msg").length >= n + 2, before, { timeout: 60000 });
    await page.waitForSelector("#send:not([disabled])");
  }
  if (awaitPerson) await page.waitForSelector(".msg.person", { timeout: 90000 });
  await page.screenshot({ path: shot, fullPage: true });
  const shown = await page.$$eval(".msg", (ds) => ds.map((d) => ({ kind: d.className.replace("msg ", ""), text: d.innerText,
                                                                source: d.getAttribute("data-source") })));
  const conversation = await page.evaluate(() => localStorage.getItem("dongcha.support.conversation"));
  console.log(JSON.stringify({ conversation, shown }));
} finally {
  await browser.close();
}
