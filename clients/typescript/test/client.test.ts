// The client against a live sms-notify, as `cargo xtask test` starts it (xtask/src/typescript.rs):
// embedded database, console provider, a throwaway API key, and one test number whose
// verifications take a fixed code. Run by hand with the same variables set.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { createSmsNotify, SmsNotifyError } from "../src/index.js";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through \`cargo xtask typescript\``);
  }
  return value;
}

const baseUrl = required("SMS_NOTIFY_URL");
const apiKey = required("SMS_NOTIFY_API_KEY");
const testNumber = required("SMS_NOTIFY_TEST_NUMBER");
const testCode = required("SMS_NOTIFY_TEST_CODE");

const client = createSmsNotify({ baseUrl, apiKey });

/** The problem a call was refused with; fails the test when the call succeeded. */
async function refusal(call: Promise<unknown>): Promise<SmsNotifyError> {
  try {
    await call;
  } catch (error) {
    assert.ok(error instanceof SmsNotifyError, `not an SmsNotifyError: ${String(error)}`);
    return error;
  }
  assert.fail("the call succeeded");
}

test("a started verification refuses a wrong code, approves the right one, then ends", async () => {
  const started = await client.verifications.start({ to: testNumber });
  assert.equal(started.status, "pending");
  assert.equal(started.channel, "sms");

  const wrong = await client.verifications.check(started.id, testCode === "000000" ? "111111" : "000000");
  assert.deepEqual([wrong.status, wrong.valid], ["pending", false]);
  assert.ok(wrong.attempts_left > 0);

  const right = await client.verifications.check(started.id, testCode);
  assert.deepEqual([right.status, right.valid], ["approved", true]);
  assert.equal((await client.verifications.get(started.id)).status, "approved");

  // As in Twilio Verify, an ended verification is not found: 404 with code 20404.
  const ended = await refusal(client.verifications.check(started.id, testCode));
  assert.equal(ended.status, 404);
  assert.equal(ended.code, 20404);
});

test("a verification is checked by number and canceled by id", async () => {
  const started = await client.verifications.start({ to: testNumber, code_length: 6 });
  const canceled = await client.verifications.cancel(started.id);
  assert.equal(canceled.status, "canceled");
  const none = await refusal(client.verifications.checkByNumber(testNumber, testCode));
  assert.equal(none.status, 404);
});

test("a sent message is found by its id, and its idempotency key sends it once", async () => {
  const idempotencyKey = randomUUID();
  const sent = await client.messages.send(
    { to: "+15551234567", body: "Your order has shipped." },
    { idempotencyKey },
  );
  assert.equal(sent.channel, "sms");
  const again = await client.messages.send(
    { to: "+15551234567", body: "Your order has shipped." },
    { idempotencyKey },
  );
  assert.equal(again.id, sent.id);

  const found = await client.messages.get(sent.id);
  assert.equal(found.id, sent.id);
  assert.ok(["queued", "sending", "sent", "delivered"].includes(found.status), found.status);
});

test("a refused request carries the problem document naming the field", async () => {
  const problem = await refusal(client.messages.send({ to: "not a number", body: "Hello" }));
  assert.equal(problem.status, 422);
  assert.equal(problem.problem?.field, "to");
  assert.match(problem.message, /^sms-notify answered 422: /);
});

test("a wrong API key is refused with 401", async () => {
  const stranger = createSmsNotify({ baseUrl, apiKey: "not-a-key" });
  const refused = await refusal(stranger.messages.get(randomUUID()));
  assert.equal(refused.status, 401);
});

test("every other route is typed through raw", async () => {
  const { data, response } = await client.raw.GET("/v1/templates");
  assert.equal(response.status, 200);
  assert.ok(data?.templates.some((template) => template.name === "two-factor-auth"));
});
