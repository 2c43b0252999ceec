// The hand-written layer of the sms-notify client: the calls a service makes most
// (verifications.start and .check, messages.send and .get) as plain async functions that return
// the API's documents and throw one error type carrying the RFC 9457 problem. Everything else is
// reachable, just as typed, through `raw` (openapi-fetch over the generated `paths`). The
// webhooks the service posts are verified by `webhooks.verify` (./webhooks.ts).
//
// The types come from docs/openapi.json through openapi-typescript (`npm run generate`), so a
// change of the API that this file no longer matches fails `tsc`.

import createClient, { type Client } from "openapi-fetch";

import type { components, paths } from "./schema.js";

export {
  webhooks,
  WebhookVerificationError,
  type BlockedVerification,
  type MessageEventType,
  type VerificationEventType,
  type WebhookEvent,
  type WebhookEventType,
  type WebhookHeaders,
} from "./webhooks.js";

type Schemas = components["schemas"];

export type Channel = Schemas["Channel"];
export type StartVerification = Schemas["StartBody"];
export type StartedVerification = Schemas["StartedView"];
export type Verification = Schemas["VerificationView"];
export type VerificationCheck = Schemas["CheckView"];
export type SendMessage = Schemas["SendMessageBody"];
export type Message = Schemas["MessageView"];
export type MessageStatus = Schemas["MessageStatus"];
export type Problem = Schemas["Problem"];

export interface SmsNotifyOptions {
  /** The service's URL, such as `https://sms-notify.internal`. */
  baseUrl: string;
  /** One of the service's `API_KEYS` (the part after `name:`). */
  apiKey: string;
  /** A `fetch` of your own (tests, proxies); the global one by default. */
  fetch?: typeof globalThis.fetch;
}

/** An answer other than success: the HTTP status and the service's problem document. */
export class SmsNotifyError extends Error {
  readonly status: number;
  readonly problem: Problem | undefined;

  constructor(status: number, problem: Problem | undefined) {
    super(
      problem
        ? `sms-notify answered ${status}: ${problem.title}: ${problem.detail}`
        : `sms-notify answered ${status}`,
    );
    this.name = "SmsNotifyError";
    this.status = status;
    this.problem = problem;
  }

  /** Twilio's error code where the API follows Twilio Verify (`20404`, `60202`). */
  get code(): number | null | undefined {
    return this.problem?.code;
  }
}

export interface SmsNotify {
  verifications: {
    /** Sends a code to `to`, or a new code for its pending verification. */
    start(request: StartVerification): Promise<StartedVerification>;
    /** Checks a code against the verification `id`; `valid` says whether it was right. */
    check(id: string, code: string): Promise<VerificationCheck>;
    /** Checks a code against the pending verification of the number `to`. */
    checkByNumber(to: string, code: string): Promise<VerificationCheck>;
    get(id: string): Promise<Verification>;
    cancel(id: string): Promise<Verification>;
  };
  messages: {
    /**
     * Queues a message. With an `idempotencyKey`, the same request sent again returns the
     * message the first one queued instead of sending another.
     */
    send(message: SendMessage, options?: { idempotencyKey?: string }): Promise<Message>;
    get(id: string): Promise<Message>;
  };
  /** Every route, typed from the OpenAPI description. */
  raw: Client<paths>;
}

export function createSmsNotify(options: SmsNotifyOptions): SmsNotify {
  const raw = createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ""),
    headers: { Authorization: `Bearer ${options.apiKey}` },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  return {
    verifications: {
      start: async (body) => answer(await raw.POST("/v1/verifications", { body })),
      check: async (id, code) =>
        answer(
          await raw.POST("/v1/verifications/{id}/check", {
            params: { path: { id } },
            body: { code },
          }),
        ),
      checkByNumber: async (to, code) =>
        answer(await raw.POST("/v1/verification-checks", { body: { to, code } })),
      get: async (id) =>
        answer(await raw.GET("/v1/verifications/{id}", { params: { path: { id } } })),
      cancel: async (id) =>
        answer(await raw.POST("/v1/verifications/{id}/cancel", { params: { path: { id } } })),
    },
    messages: {
      send: async (body, { idempotencyKey } = {}) =>
        answer(
          await raw.POST("/v1/messages", {
            body,
            params: {
              header: idempotencyKey === undefined ? {} : { "Idempotency-Key": idempotencyKey },
            },
          }),
        ),
      get: async (id) => answer(await raw.GET("/v1/messages/{id}", { params: { path: { id } } })),
    },
    raw,
  };
}

/** openapi-fetch's result as a value or a thrown `SmsNotifyError`. */
function answer<T>(
  result: { data?: T; error?: unknown; response: Response },
): T {
  if (result.response.ok && result.data !== undefined) {
    return result.data;
  }
  throw new SmsNotifyError(result.response.status, asProblem(result.error));
}

function asProblem(error: unknown): Problem | undefined {
  return typeof error === "object" && error !== null && "status" in error && "title" in error
    ? (error as Problem)
    : undefined;
}
