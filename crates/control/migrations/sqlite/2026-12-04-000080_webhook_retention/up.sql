-- Expired `document.saved` debounce marks are pruned by age (the webhook
-- dispatcher, with finished deliveries older than TANDEM_WEBHOOK_RETENTION_DAYS).
CREATE INDEX webhook_debounce_last ON webhook_debounce (last_at);
