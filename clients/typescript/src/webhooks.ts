// Verifying the webhooks sms-notify posts to a client service. They are Standard Webhooks, so
// the check is the Standard Webhooks library's own (signature over `{id}.{timestamp}.{body}`,
// any of the space-separated signatures during a secret rotation, a five-minute timestamp
// tolerance against replayed captures); this layer only takes the headers as Node or `fetch`
// hands them over and returns the event typed.

import { Webhook, WebhookVerificationError } from "standardwebhooks";

import type { components } from "./schema.js";

type Schemas = components["schemas"];

export { WebhookVerificationError };

/** Verification events whose `data` is the verification as the API shows it at the event. */
export type VerificationEventType =
  | "verification.approved"
  | "verification.canceled"
  | "verification.expired"
  | "verification.max_attempts_reached"
  | "verification.channel_fallback";

/** Message events whose `data` is the message as the API shows it at the event. */
export type MessageEventType =
  | "message.sent"
  | "message.delivered"
  | "message.undelivered"
  | "message.failed";

export type WebhookEventType = VerificationEventType | MessageEventType | "verification.blocked";

/** The fraud guard's refusal of a code (`verification.blocked`). */
export interface BlockedVerification {
  id: string;
  status: "blocked";
  /** The number, masked (`+1555***4567`). */
  to: string;
  verification_id: string | null;
  risk: Schemas["RiskView"];
  created_at: string;
}

interface Envelope<Type extends WebhookEventType, Data> {
  /** The event's id, also its `webhook-id` header: the same on a retry or a replay. */
  id: string;
  type: Type;
  created_at: string;
  /** Counts the object's events from 1, to put events that arrive out of order back in order. */
  sequence: number;
  /**
   * The object at the event. When the object was erased before the event went out, only
   * its `id` is left.
   */
  data: Data;
}

/** A verified event; narrow it on `type` to get its `data` typed. */
export type WebhookEvent =
  | Envelope<
      VerificationEventType,
      Schemas["VerificationView"] & { fallback?: { from: Schemas["Channel"]; to: Schemas["Channel"] } }
    >
  | Envelope<MessageEventType, Schemas["MessageView"]>
  | Envelope<"verification.blocked", BlockedVerification>;

/** Headers as Node's `IncomingMessage` or `fetch`'s `Request` gives them. */
export type WebhookHeaders = Headers | Record<string, string | string[] | undefined>;

export const webhooks = {
  /**
   * The event in `payload` when it is signed by `secret` (the endpoint's `whsec_...`), its
   * timestamp within five minutes of now; otherwise throws `WebhookVerificationError`.
   * `payload` must be the body exactly as received (bytes or text), before any JSON parsing.
   */
  verify(payload: string | Uint8Array, headers: WebhookHeaders, secret: string): WebhookEvent {
    return new Webhook(secret).verify(payload, plain(headers)) as WebhookEvent;
  },
};

/** The three `webhook-*` headers as single strings; a repeated header is refused by the check. */
function plain(headers: WebhookHeaders): Record<string, string> {
  const names = ["webhook-id", "webhook-timestamp", "webhook-signature"];
  const found: Record<string, string> = {};
  if (headers instanceof Headers) {
    for (const name of names) {
      const value = headers.get(name);
      if (value !== null) {
        found[name] = value;
      }
    }
    return found;
  }
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (names.includes(lower) && typeof value === "string") {
      found[lower] = value;
    }
  }
  return found;
}
