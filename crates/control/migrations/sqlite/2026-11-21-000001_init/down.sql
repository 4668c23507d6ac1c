DROP TABLE members;
DROP TABLE resources;
DROP TABLE projects;
DROP TABLE workspaces;
DROP TABLE sessions;
DROP TABLE users;
DROP TABLE orgs;
