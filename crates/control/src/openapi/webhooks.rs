//! Webhooks of an organization (`http::webhook_routes`), one entry per route
//! and method.

use tandem_protocol::webhooks::*;

use super::*;

pub fn operations() -> Vec<Op> {
    const H: &str = "/orgs/{id}/webhooks";
    let one = format!("{H}/{{hookId}}");
    vec![
        get(H, "listWebhooks", "An organization's webhook endpoints, oldest first (owners)")
            .describe("Secrets are never listed. Members get 403, outsiders 404.")
            .errors(&[403, 404])
            .page::<WebhookEndpoint>(),
        post(H, "createWebhook", "Add a webhook endpoint (owners); its secret is shown once")
            .describe(
                "201 with the endpoint and `secret` (`whsec_…`), which is never shown again. \
                 422 `webhook_target_refused` when the URL's host is, or resolves to, a \
                 private, loopback, link-local, unique-local, multicast or unspecified \
                 address (unless TANDEM_WEBHOOK_ALLOW_PRIVATE); 422 `validation_failed` for \
                 a malformed URL, a name that does not resolve, unknown event types, or \
                 more than 20 endpoints. 500 `misconfigured` without TANDEM_SETTINGS_KEY.",
            )
            .body::<CreateWebhook>()
            .errors(&[403, 404])
            .ok::<CreatedWebhook>(201),
        get(&one, "getWebhook", "A webhook endpoint (owners)")
            .errors(&[403, 404])
            .ok::<WebhookEndpoint>(200),
        patch(&one, "updateWebhook", "Change a webhook's URL, events, description, or enable/disable it")
            .describe(
                "`enabled: true` re-enables a disabled endpoint (pending deliveries resume); \
                 `false` disables it (`disabledReason: manual`). A new URL is checked as at \
                 creation (422 `webhook_target_refused`).",
            )
            .body::<UpdateWebhook>()
            .errors(&[403, 404])
            .ok::<WebhookEndpoint>(200),
        delete(&one, "deleteWebhook", "Delete a webhook endpoint and its delivery log")
            .errors(&[403, 404])
            .no_content(),
        post(
            &format!("{one}/rotate-secret"),
            "rotateWebhookSecret",
            "Replace a webhook's signing secret; the new one is shown once",
        )
        .describe("Every later attempt, including retries of earlier messages, is signed with the new secret.")
        .errors(&[403, 404])
        .ok::<WebhookSecret>(200),
        get(
            &format!("{one}/deliveries"),
            "listWebhookDeliveries",
            "A webhook's deliveries, newest first, with their attempts",
        )
        .errors(&[403, 404])
        .page::<WebhookDelivery>(),
        post(
            &format!("{one}/deliveries/{{deliveryId}}/redeliver"),
            "redeliverWebhook",
            "Send a delivered or failed message again (same webhook-id, fresh signature)",
        )
        .describe(
            "202: the delivery is pending again with a fresh retry schedule. 409 when the \
             endpoint is disabled or the delivery is pending already.",
        )
        .errors(&[403, 404, 409])
        .ok::<WebhookDelivery>(202),
    ]
}
