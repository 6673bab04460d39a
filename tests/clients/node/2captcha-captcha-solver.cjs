// @2captcha/captcha-solver (2Captcha's official npm client) against capgate's legacy API.
// The hosts are constants (https://2captcha.com/in.php, /res.php) read through the Solver's
// `in` and `res` getters: a subclass that overrides those two getters points it at capgate.
"use strict";

const { Solver } = require("@2captcha/captcha-solver");
const { run } = require("./common.cjs");

run(async ({ base, key, image }) => {
  class CapgateSolver extends Solver {
    get in() {
      return `${base}/in.php`;
    }
    get res() {
      return `${base}/res.php`;
    }
  }
  const solver = new CapgateSolver(key, 100); // poll every 100 ms (default 5 s)
  const found = { balanceBefore: await solver.balance() };
  const read = await solver.imageCaptcha({ body: image }); // a JSON POST to in.php
  found.imageText = read.data;
  found.imageId = read.id;
  found.balanceAfterImage = await solver.balance();
  found.badReport = await solver.badReport(read.id);
  found.balanceAfterReport = await solver.balance();
  const page = "https://example.com/";
  found.turnstile = (await solver.cloudflareTurnstile({ pageurl: page, sitekey: "1x00000000000000000000AA" })).data;
  found.recaptcha = (
    await solver.recaptcha({ pageurl: page, googlekey: "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI" })
  ).data;
  const hcaptcha = await solver.hcaptcha({ pageurl: page, sitekey: "10000000-ffff-ffff-ffff-000000000001" });
  found.hcaptcha = hcaptcha.data;
  found.goodReport = await solver.goodReport(hcaptcha.id);
  return found;
});
