-- Schema 1 of the PostgreSQL backend: the same records as the embedded store's schema 6,
-- with constraints that hold the rules even against a bug above them.
--
-- Text that is a key sorts by its bytes (COLLATE "C"), as the embedded store's keys do, so
-- that pages and cursors agree between the two, whatever the database's locale. Foreign
-- keys are checked at commit, so that a change may write its rows in any order.
--
-- Times are milliseconds since the Unix epoch (bigint); uids are 0 to 2^32 - 1 (bigint,
-- checked); each enumeration is text spelled as the wire spells it, checked. (Plain types
-- with checks rather than domains: the client library binds parameters by exact type.)

CREATE TABLE orgs (
    name           text COLLATE "C" PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
    created_at     bigint NOT NULL,
    created_by_uid bigint NOT NULL CHECK (created_by_uid BETWEEN 0 AND 4294967295)
);

CREATE TABLE accounts (
    email        text COLLATE "C" PRIMARY KEY,
    status       text NOT NULL CHECK (status IN ('pending', 'active')),
    uid          bigint CHECK (uid BETWEEN 0 AND 4294967295),
    created_at   bigint NOT NULL,
    activated_at bigint
);

-- A uid acts as one account, and an account through one uid.
CREATE TABLE bindings (
    uid            bigint PRIMARY KEY CHECK (uid BETWEEN 0 AND 4294967295),
    email          text COLLATE "C" NOT NULL REFERENCES accounts (email)
                       DEFERRABLE INITIALLY DEFERRED,
    -- The uid's user name when it was bound; NULL for a binding carried over from a store
    -- whose uid had no user.
    user_name      text,
    bound_at       bigint NOT NULL,
    -- Who made it: a superuser, an organization's invitation (provenance_org), or unknown.
    provenance     text NOT NULL CHECK (provenance IN ('superuser', 'org', 'unknown')),
    provenance_org text,
    CHECK ((provenance = 'org') = (provenance_org IS NOT NULL)),
    -- Checked at commit: a rebind may take the account from one uid before giving it to
    -- another.
    CONSTRAINT one_binding_per_account UNIQUE (email) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE memberships (
    org        text COLLATE "C" NOT NULL REFERENCES orgs (name) DEFERRABLE INITIALLY DEFERRED,
    email      text COLLATE "C" NOT NULL REFERENCES accounts (email)
                   DEFERRABLE INITIALLY DEFERRED,
    role       text NOT NULL CHECK (role IN ('admin', 'deployer', 'readonly', 'viewer')),
    uid        bigint CHECK (uid BETWEEN 0 AND 4294967295),
    status     text NOT NULL CHECK (status IN ('invited', 'active', 'expired')),
    invited_by text NOT NULL,
    invited_at bigint NOT NULL,
    expires_at bigint,
    token_key  bytea CHECK (length(token_key) = 32),
    PRIMARY KEY (org, email)
);
-- The organizations of an account.
CREATE INDEX memberships_by_account ON memberships (email, org);
-- Pending invitations by expiry: the sweeper reads what is due, and no more.
CREATE INDEX pending_by_expiry ON memberships (expires_at, org, email) WHERE status = 'invited';
-- Active admins: the last-admin rule asks whether there is another.
CREATE INDEX active_admins ON memberships (org, email) WHERE role = 'admin' AND status = 'active';

-- An organization that had an active admin keeps one. Checked at commit, after every change
-- of the transaction, so that roles changed within one are judged together; under
-- SERIALIZABLE, two transactions that each take away one of the last two admins cannot
-- both commit.
CREATE FUNCTION keep_an_admin() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM orgs WHERE name = OLD.org)
       AND NOT EXISTS (SELECT FROM memberships
                       WHERE org = OLD.org AND role = 'admin' AND status = 'active') THEN
        RAISE EXCEPTION 'the last admin of % cannot be removed or demoted', OLD.org
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER keep_an_admin
    AFTER UPDATE OR DELETE ON memberships
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW
    WHEN (OLD.role = 'admin' AND OLD.status = 'active')
    EXECUTE FUNCTION keep_an_admin();

CREATE TABLE tokens (
    key                 bytea PRIMARY KEY CHECK (length(key) = 32),
    org                 text COLLATE "C" NOT NULL,
    email               text COLLATE "C" NOT NULL,
    expires_at          bigint NOT NULL,
    state               text NOT NULL CHECK (state IN ('pending', 'used', 'revoked', 'expired')),
    -- The only Unix user who may redeem it, when one is named.
    redeemer_uid        bigint CHECK (redeemer_uid BETWEEN 0 AND 4294967295),
    redeemer_name       text,
    issued_by_superuser boolean NOT NULL,
    -- When a spent token may be forgotten: 30 days past its expiry (SPENT_TOKEN_MEMORY).
    forget_at           bigint GENERATED ALWAYS AS
        (CASE WHEN state <> 'pending' THEN expires_at + 2592000000 END) STORED,
    CHECK ((redeemer_uid IS NULL) = (redeemer_name IS NULL))
);
CREATE INDEX spent_tokens ON tokens (forget_at, key) WHERE forget_at IS NOT NULL;

-- A token is spent once: used, revoked or expired, it never changes again (writing it
-- again as it is changes nothing).
CREATE FUNCTION spend_once() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a token already % cannot change', OLD.state
        USING ERRCODE = 'integrity_constraint_violation';
END
$$;
CREATE TRIGGER spend_once
    BEFORE UPDATE ON tokens
    FOR EACH ROW
    WHEN (OLD.state <> 'pending'
          AND (OLD.org, OLD.email, OLD.expires_at, OLD.state, OLD.redeemer_uid,
               OLD.redeemer_name, OLD.issued_by_superuser)
              IS DISTINCT FROM
              (NEW.org, NEW.email, NEW.expires_at, NEW.state, NEW.redeemer_uid,
               NEW.redeemer_name, NEW.issued_by_superuser))
    EXECUTE FUNCTION spend_once();

-- The organization each uid chose with `org use`.
CREATE TABLE current_org (
    uid bigint PRIMARY KEY CHECK (uid BETWEEN 0 AND 4294967295),
    org text COLLATE "C" NOT NULL REFERENCES orgs (name) DEFERRABLE INITIALLY DEFERRED
);

CREATE TABLE audit (
    seq    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at     bigint NOT NULL,
    uid    bigint CHECK (uid BETWEEN 0 AND 4294967295),
    pid    integer,
    action text NOT NULL,
    org    text COLLATE "C",
    target text,
    detail text
);

-- The change feed. Sequence numbers are dense and in commit order, whichever daemon
-- committed: every write transaction begins with LOCK TABLE event_head IN EXCLUSIVE MODE,
-- before its snapshot is taken, so daemons' writes run one after another (each seeing the
-- one before) and take the next numbers from event_head in the order they commit. A reader
-- that has seen event n has seen every event before it, on any daemon. (Reads take no
-- lock and never wait for it.)
CREATE TABLE event_head (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq      bigint NOT NULL CHECK (seq >= 0)
);
INSERT INTO event_head (seq) VALUES (0);

CREATE TABLE events (
    seq           bigint PRIMARY KEY CHECK (seq > 0),
    at            bigint NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('member.added', 'member.reinvited',
                      'member.activated', 'member.role_changed', 'member.expired',
                      'member.removed', 'binding.changed')),
    org           text COLLATE "C",
    email         text COLLATE "C" NOT NULL,
    role          text CHECK (role IN ('admin', 'deployer', 'readonly', 'viewer')),
    previous_role text CHECK (previous_role IN ('admin', 'deployer', 'readonly', 'viewer')),
    status        text CHECK (status IN ('invited', 'active', 'expired')),
    uid           bigint CHECK (uid BETWEEN 0 AND 4294967295)
);

-- Each event under every organization whose feed carries it: a membership's under its
-- organization, a binding's under each organization of the account.
CREATE TABLE org_events (
    org text COLLATE "C" NOT NULL,
    seq bigint NOT NULL REFERENCES events (seq) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (org, seq)
);
-- What a range of the feed touched: a daemon woken by another's commit asks which
-- organizations' feeds to wake.
CREATE INDEX org_events_by_seq ON org_events (seq);
