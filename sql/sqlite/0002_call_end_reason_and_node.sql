-- Why a call failed or was refused, and which node ran it: at start-up a
-- node closes the calls it left open (a crash) as failed, "node restarted".
ALTER TABLE calls ADD COLUMN end_reason VARCHAR(200) NULL;
ALTER TABLE calls ADD COLUMN node VARCHAR(64) NULL;
CREATE INDEX calls_node_open ON calls (node, end_ms);
