DROP TABLE room_snapshots;
