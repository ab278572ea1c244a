-- Schema 2: the audit log becomes a chain, as in the embedded store's schema 7. Each record
-- is the JSON text of its entry (actor, event key, target, before and after, outcome),
-- kept exactly as it was hashed, with hash = SHA-256(previous hash || text); the first
-- record's previous hash is 32 zero bytes. Records are numbered densely by the daemon
-- under the feed's lock (event_head), which every write transaction holds.

CREATE TABLE audit_log (
    seq    bigint PRIMARY KEY CHECK (seq > 0),
    record text NOT NULL,
    hash   bytea NOT NULL CHECK (length(hash) = 32),
    -- The organization a record names, for an organization's own pages.
    org    text COLLATE "C" GENERATED ALWAYS AS (record::jsonb ->> 'org') STORED
);
CREATE INDEX audit_log_by_org ON audit_log (org, seq) WHERE org IS NOT NULL;

-- The records of schema 1 carried over under their own numbers, in today's terms (the
-- daemon's AuditRecord::from_legacy maps them alike), and sealed in order.
DO $$
DECLARE
    old      record;
    previous bytea := decode(repeat('00', 32), 'hex');
    entry    text;
BEGIN
    FOR old IN SELECT * FROM audit ORDER BY seq LOOP
        entry := json_build_object(
            'seq', old.seq,
            'at', to_char((to_timestamp(old.at / 1000) + (old.at % 1000) * interval '1 millisecond')
                          AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
            'actor', json_build_object(
                'kind', CASE WHEN old.uid IS NULL THEN 'daemon'
                             WHEN old.uid = 0 THEN 'superuser'
                             ELSE 'user' END,
                'email', NULL, 'uid', old.uid, 'user', NULL, 'pid', old.pid),
            'event', CASE old.action
                         WHEN 'org.create' THEN 'organization.create'
                         WHEN 'user.invite' THEN 'organization.user.invite'
                         WHEN 'user.reinvite' THEN 'organization.user.invite'
                         WHEN 'user.remove' THEN 'organization.user.remove'
                         WHEN 'role.grant' THEN 'organization.role.grant'
                         WHEN 'invitation.expire' THEN 'organization.invitation.expire'
                         WHEN 'binding.stale' THEN 'account.binding.stale'
                         ELSE old.action END,
            'org', old.org,
            'target', CASE
                          WHEN old.target IS NOT NULL THEN json_build_object(
                              'type', CASE old.action WHEN 'org.create' THEN 'organization'
                                                      ELSE 'account' END,
                              'id', old.target)
                          WHEN old.action = 'org.create' AND old.org IS NOT NULL THEN
                              json_build_object('type', 'organization', 'id', old.org)
                      END,
            'before', NULL,
            'after', NULL,
            'outcome', 'ok',
            'detail', old.detail)::text;
        previous := sha256(previous || convert_to(entry, 'UTF8'));
        INSERT INTO audit_log (seq, record, hash) VALUES (old.seq, entry, previous);
    END LOOP;
END
$$;

DROP TABLE audit;

-- Signed checkpoints of the audit log (the daemon's notes), by the record they cover.
CREATE TABLE audit_checkpoints (
    seq  bigint PRIMARY KEY CHECK (seq > 0),
    note text NOT NULL
);

-- Each change of the feed names who made it, as its audit record does: the JSON text of
-- the actor (kind, e-mail, uid, Unix user, pid). Changes made before have none.
ALTER TABLE events ADD COLUMN actor text;
