DROP TABLE message_set_members;
DROP TABLE message_sets;
ALTER TABLE conversations DROP COLUMN summary;
ALTER TABLE conversations DROP COLUMN parent_chat_id;
ALTER TABLE conversations DROP COLUMN is_quick_chat;
