DROP TABLE workspace_extensions;
DROP TABLE extension_files;
DROP TABLE extensions;
