// The web chat as a person uses it: sign in with the operator token, type each question, wait for its
// reply, print the replies as a JSON array, and keep a screenshot.
// usage: node chat.mjs URL TOKEN QUESTION [QUESTION...] SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, token, ...rest] = process.argv.slice(2);
const shot = rest.pop();
const questions = rest;

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ locale: "zh-CN", viewport: { width: 1100, height: 1400 } });
  await page.goto(url);
  await page.fill("#token", token);
  await page.click("#signin-button");
  await page.waitForSelector("#chat:not([hidden])");
  const replies = [];
  for (const [i, q] of questions.entries()) {
    await page.fill("#question", "");
    await page.type("#question", q);
    await page.press("#question", "Enter");
    const reply = page.locator(".msg.bot").nth(i);
    await reply.waitFor();
    await page.waitForFunction((n) => {
      const d = document.querySelectorAll(".msg.bot")[n];
      return d && d.getAttribute("data-state") === "done";
    }, i, { timeout: 120000 });
    replies.push(await reply.innerText());
  }
  await page.screenshot({ path: shot, fullPage: true });
  console.log(JSON.stringify(replies));
} finally {
  await browser.close();
}
