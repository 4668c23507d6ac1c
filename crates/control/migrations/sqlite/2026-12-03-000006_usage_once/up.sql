-- Usage is recorded at most once per assistant message: a retried or
-- repeated POST /usage naming the same message is a 409, totals unchanged.
-- Earlier duplicates (if any) are dropped first, keeping one record each.
DELETE FROM usage_events
WHERE message_id IS NOT NULL
  AND id NOT IN (
    SELECT MIN(id) FROM usage_events WHERE message_id IS NOT NULL GROUP BY message_id
  );
CREATE UNIQUE INDEX usage_events_once_per_message ON usage_events (message_id);
