// The `2captcha` npm package (3.x, the older community client) against capgate's legacy API.
// Its hosts are hard-coded in the Solver's `in` and `res` getters: a subclass overrides them.
"use strict";

const { Solver } = require("2captcha");
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
  // POSTs {"body": ...} as text/plain to in.php?method=base64&json=1...
  const read = await solver.imageCaptcha(image);
  found.imageText = read.data;
  found.imageId = read.id;
  found.balanceAfterImage = await solver.balance();
  await solver.report(read.id); // reportbad; resolves to nothing
  found.balanceAfterReport = await solver.balance();
  const page = "https://example.com/";
  found.turnstile = (await solver.turnstile("1x00000000000000000000AA", page)).data;
  found.recaptcha = (await solver.recaptcha("6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI", page)).data;
  const hcaptcha = await solver.hcaptcha("10000000-ffff-ffff-ffff-000000000001", page);
  found.hcaptcha = hcaptcha.data;
  await solver.goodReport(hcaptcha.id);
  return found;
});
