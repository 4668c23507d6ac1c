DROP TABLE access_events;
DROP TABLE collab_tokens;
