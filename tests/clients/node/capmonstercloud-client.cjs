// @zennolab_com/capmonstercloud-client (CapMonster Cloud's official npm client) against capgate.
// ClientOptions takes `serviceUrl`; under Node it keeps only the host and port of it (the
// path it sends is '/' + method), so the root is the only place it can reach.
"use strict";

const {
  CapMonsterCloudClientFactory,
  ClientOptions,
  HCaptchaRequest,
  ImageToTextRequest,
  RecaptchaV2Request,
  TurnstileRequest,
} = require("@zennolab_com/capmonstercloud-client");
const { run } = require("./common.cjs");

run(async ({ base, key, image }) => {
  const client = CapMonsterCloudClientFactory.Create(new ClientOptions({ clientKey: key, serviceUrl: base }));
  const quick = { firstRequestDelay: 0, requestsInterval: 100, timeout: 20000 };
  const solve = async (request) => {
    const result = await client.Solve(request, quick);
    if (result.error) throw new Error(`${request.type}: ${result.error}`);
    return result.solution;
  };
  const found = { balanceBefore: (await client.getBalance()).balance };
  found.imageText = (await solve(new ImageToTextRequest({ body: image }))).text;
  found.balanceAfterImage = (await client.getBalance()).balance;
  // The library's own timeouts for an image task: the first poll after 350 ms, give up at 10 s.
  found.imageTextDefaultTimeouts = (await client.Solve(new ImageToTextRequest({ body: image }))).solution;
  const page = "https://example.com/";
  found.turnstile = (await solve(new TurnstileRequest({ websiteURL: page, websiteKey: "1x00000000000000000000AA" }))).token;
  found.recaptcha = (
    await solve(new RecaptchaV2Request({ websiteURL: page, websiteKey: "6LeIxAcTAAAAAJcZVRqyHh71UMIEGNQ_MXjiZKhI" }))
  ).gRecaptchaResponse;
  found.hcaptcha = (
    await solve(new HCaptchaRequest({ websiteURL: page, websiteKey: "10000000-ffff-ffff-ffff-000000000001" }))
  ).gRecaptchaResponse;
  return found;
});
