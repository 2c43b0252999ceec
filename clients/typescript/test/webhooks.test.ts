// webhooks.verify against real deliveries: an endpoint registered through the client on the
// live service (started with WEBHOOK_ALLOW_PRIVATE=true by xtask/src/typescript.rs, so that a
// plain-http receiver on loopback is allowed) receives the service's own signed post here.

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";

import { Webhook } from "standardwebhooks";

import { createSmsNotify, webhooks, WebhookVerificationError } from "../src/index.js";

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run these tests through \`cargo xtask typescript\``);
  }
  return value;
}

const client = createSmsNotify({
  baseUrl: required("SMS_NOTIFY_URL"),
  apiKey: required("SMS_NOTIFY_API_KEY"),
});
// Not the test number client.test.ts verifies, which runs beside this file: a start on the
// same number would reuse (and that file would cancel) this file's pending verification.
const NUMBER = "+15557654321";

interface Delivery {
  body: Buffer;
  headers: IncomingHttpHeaders;
}

test("a real delivery verifies, and the same delivery with its body changed is refused", async (t) => {
  const deliveries: Delivery[] = [];
  const receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      deliveries.push({ body: Buffer.concat(chunks), headers: request.headers });
      response.writeHead(200).end();
    });
  });
  receiver.listen(0, "127.0.0.1");
  await once(receiver, "listening");
  t.after(() => receiver.close());
  const { port } = receiver.address() as AddressInfo;

  const { data: endpoint, error } = await client.raw.POST("/v1/webhook-endpoints", {
    body: { url: `http://127.0.0.1:${port}/hooks/sms-notify`, events: ["verification.canceled"] },
  });
  assert.ok(endpoint, `registration refused: ${JSON.stringify(error)}`);
  t.after(() =>
    client.raw.DELETE("/v1/webhook-endpoints/{id}", { params: { path: { id: endpoint.id } } }),
  );

  const started = await client.verifications.start({ to: NUMBER });
  await client.verifications.cancel(started.id);

  // Other tests' cancellations under the same key may arrive too: wait for this one's.
  const deadline = Date.now() + 20_000;
  let ours: { delivery: Delivery; event: ReturnType<typeof webhooks.verify> } | undefined;
  for (;;) {
    for (const delivery of deliveries) {
      const event = webhooks.verify(delivery.body, delivery.headers, endpoint.secret);
      if (event.data.id === started.id) {
        ours = { delivery, event };
      }
    }
    if (ours !== undefined) {
      break;
    }
    assert.ok(Date.now() < deadline, `no delivery for ${started.id} within 20 s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  const { delivery, event } = ours;
  assert.equal(event.type, "verification.canceled");
  assert.equal(event.id, delivery.headers["webhook-id"]);
  assert.equal(event.sequence, 1);
  if (event.type === "verification.canceled") {
    assert.equal(event.data.status, "canceled");
    assert.equal(event.data.to, "+1555***4321");
  }

  const tampered = Buffer.from(delivery.body.toString("utf8").replace('"canceled"', '"approved"'));
  assert.notDeepEqual(tampered, delivery.body);
  assert.throws(
    () => webhooks.verify(tampered, delivery.headers, endpoint.secret),
    WebhookVerificationError,
  );
  assert.throws(
    () => webhooks.verify(delivery.body, delivery.headers, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
    WebhookVerificationError,
  );
});

test("fetch's Headers are taken, and an old capture is refused even when its signature holds", () => {
  const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
  const body = JSON.stringify({
    id: "6f1c9a52-3b0e-4d8f-9a1e-2c7b5d4e8f10",
    type: "message.delivered",
    created_at: "2026-12-06T01:02:03.456789Z",
    sequence: 2,
    data: { id: "0193a4c2-0000-7000-8000-000000000000", status: "delivered" },
  });
  const signed = (at: Date) =>
    new Headers({
      "Webhook-Id": "6f1c9a52-3b0e-4d8f-9a1e-2c7b5d4e8f10",
      "Webhook-Timestamp": String(Math.floor(at.getTime() / 1000)),
      "Webhook-Signature": new Webhook(secret).sign("6f1c9a52-3b0e-4d8f-9a1e-2c7b5d4e8f10", at, body),
    });

  const event = webhooks.verify(body, signed(new Date()), secret);
  assert.deepEqual([event.type, event.sequence, event.data.status], ["message.delivered", 2, "delivered"]);

  const anHourAgo = new Date(Date.now() - 3_600_000);
  assert.throws(() => webhooks.verify(body, signed(anHourAgo), secret), /too old/);
});
