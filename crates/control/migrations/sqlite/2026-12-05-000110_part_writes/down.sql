DROP TABLE file_part_writers;
