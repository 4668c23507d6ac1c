DROP TABLE sync_clients;
DROP TABLE sync_rows;
DROP TABLE sync_workspaces;
