-- Schema 3: a membership's terms, as in the embedded store's schema 8: a block (why, by
-- whom, since and until when), an end to its access, and a role held until a time (then
-- the role held before, fallback_role). Each end has the number of warnings the feed has
-- given of it (0 to 2: a week, then a day ahead). Memberships of schema 2 have none.
--
-- due_at is when the sweeper must next look at a membership: its invitation's expiry while
-- it is invited, or what its terms make due (a block's end, a warning, access or an
-- elevation ending), the earliest. The daemon writes it (change::due_key), as it writes
-- every index of the embedded store; the sweeper reads what is due, and no more.
--
-- An admin so bounded may stop acting at any moment: the last-admin rule counts only the
-- active admins nothing bounds (MembershipRecord::is_active_admin), and so do the index
-- and the trigger that hold it.

ALTER TABLE memberships
    ADD COLUMN block_reason     text,
    ADD COLUMN block_by         text,
    ADD COLUMN block_at         bigint,
    ADD COLUMN block_until      bigint,
    ADD COLUMN access_until     bigint,
    ADD COLUMN access_warned    smallint CHECK (access_warned BETWEEN 0 AND 2),
    ADD COLUMN elevated_until   bigint,
    ADD COLUMN elevation_warned smallint CHECK (elevation_warned BETWEEN 0 AND 2),
    ADD COLUMN fallback_role    text
        CHECK (fallback_role IN ('admin', 'deployer', 'readonly', 'viewer')),
    ADD COLUMN due_at           bigint,
    -- A block is its reason, its author and its time together; its end only with them.
    ADD CONSTRAINT a_whole_block CHECK (
        (block_reason IS NULL) = (block_by IS NULL)
        AND (block_by IS NULL) = (block_at IS NULL)
        AND (block_until IS NULL OR block_at IS NOT NULL)),
    ADD CONSTRAINT a_whole_access_deadline CHECK (
        (access_until IS NULL) = (access_warned IS NULL)),
    ADD CONSTRAINT a_whole_elevation CHECK (
        (elevated_until IS NULL) = (elevation_warned IS NULL)
        AND (elevation_warned IS NULL) = (fallback_role IS NULL));

-- No membership has terms yet: it is due when its invitation expires, if it is pending.
UPDATE memberships SET due_at = expires_at WHERE status = 'invited';

-- Memberships by when they are due: the sweeper reads what is due, and no more. (It
-- replaces the index of pending invitations by expiry, which no read uses any more.)
CREATE INDEX memberships_due ON memberships (due_at, org, email) WHERE due_at IS NOT NULL;
DROP INDEX pending_by_expiry;

-- Active admins nothing bounds: the last-admin rule asks whether there is another.
DROP INDEX active_admins;
CREATE INDEX active_admins ON memberships (org, email)
    WHERE role = 'admin' AND status = 'active'
      AND block_at IS NULL AND access_until IS NULL AND elevated_until IS NULL;

-- An organization that had an active admin nothing bounds keeps one: deleting one, or
-- changing it into anything else (another role or status, a block, an end to its access
-- or its role), is refused at commit when it leaves none. Checked after every change of
-- the transaction, as before.
DROP TRIGGER keep_an_admin ON memberships;
CREATE OR REPLACE FUNCTION keep_an_admin() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM orgs WHERE name = OLD.org)
       AND NOT EXISTS (SELECT FROM memberships
                       WHERE org = OLD.org AND role = 'admin' AND status = 'active'
                         AND block_at IS NULL AND access_until IS NULL
                         AND elevated_until IS NULL) THEN
        RAISE EXCEPTION 'the last admin of % cannot be removed, demoted or bounded', OLD.org
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
-- Any change of such a row fires it (NEW cannot be named for a DELETE): the function asks
-- whether one is left, the row itself included when it still is one.
CREATE CONSTRAINT TRIGGER keep_an_admin
    AFTER UPDATE OR DELETE ON memberships
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.role = 'admin' AND OLD.status = 'active'
          AND OLD.block_at IS NULL AND OLD.access_until IS NULL AND OLD.elevated_until IS NULL)
    EXECUTE FUNCTION keep_an_admin();

-- The feed's new kinds, and what a membership's event adds for services that end sessions:
-- until when (a block, access, an elevated role), and a block's reason; and the former name
-- of what was renamed (an organization's, an account's e-mail).
ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events
    ADD CONSTRAINT events_kind_check CHECK (kind IN ('member.added', 'member.reinvited',
        'member.activated', 'member.role_changed', 'member.expired', 'member.removed',
        'member.blocked', 'member.unblocked', 'member.access_expiring', 'binding.changed',
        'org.renamed', 'account.renamed')),
    ADD COLUMN until        bigint,
    ADD COLUMN reason       text,
    ADD COLUMN previous_name text;

-- An audit record is filed under the organization it names, and stays filed under it when
-- the organization is renamed (its text, which the chain seals, keeps the name it was
-- written with). So the column is set at insert from the record, no longer generated.
ALTER TABLE audit_log ALTER COLUMN org DROP EXPRESSION;
CREATE FUNCTION file_audit_record() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.org := COALESCE(NEW.org, NEW.record::jsonb ->> 'org');
    RETURN NEW;
END
$$;
CREATE TRIGGER file_audit_record BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION file_audit_record();

-- An organization's Unix groups, each mapped to a role (`org map-group`), as in the
-- embedded store's schema 8: groups is the JSON array of the mappings (gid, name when
-- mapped, role, by whom, when), as the daemon's records write it; group_gids their gids,
-- which the daemon writes alongside, as it writes every index of the embedded store. The
-- organizations of a user's groups are read by them (`group_gids && $1`), through the
-- index. Organizations of schema 2 map none.
ALTER TABLE orgs
    ADD COLUMN groups     text NOT NULL DEFAULT '[]',
    ADD COLUMN group_gids bigint[] NOT NULL DEFAULT '{}'
        CHECK (array_position(group_gids, NULL) IS NULL
               AND 0 <= ALL (group_gids) AND 4294967295 >= ALL (group_gids));
CREATE INDEX orgs_by_group ON orgs USING gin (group_gids);
