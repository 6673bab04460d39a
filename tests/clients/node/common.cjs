// Shared by the scripts here: what test_client_libraries.py passes in, and how a script answers.
"use strict";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

// CAPGATE_BASE: the server's base URL (http://127.0.0.1:PORT, no slash at the end);
// CAPGATE_KEY: a client key; CAPGATE_IMAGE: a captcha PNG as base64.
const settings = () => ({
  base: env("CAPGATE_BASE"),
  key: env("CAPGATE_KEY"),
  image: env("CAPGATE_IMAGE"),
});

// Run the script's body and print what it found as one JSON object; any error exits 1.
// Exits explicitly: keep-alive agents must not hold the process open.
const run = (body) => {
  body(settings())
    .then((found) => {
      process.stdout.write(JSON.stringify(found) + "\n");
      process.exit(0);
    })
    .catch((error) => {
      process.stderr.write(`${error && error.stack ? error.stack : JSON.stringify(error)}\n`);
      process.exit(1);
    });
};

module.exports = { run };
