DROP TABLE file_parts;
ALTER TABLE files DROP COLUMN parts_through_control;
