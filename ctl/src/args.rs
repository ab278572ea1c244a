//! The command line's grammar: every flag, subcommand and help text, as clap definitions.

use std::ffi::OsStr;
use std::path::PathBuf;

use crate::wire::{MemberStatus, Permission, Role};
use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

/// Who can do what to whom, in a few sentences: the man page's TRUST MODEL section and the
/// operations guide's "Trust model" (docs/operations.md) say exactly this.
pub const TRUST_MODEL: &str = "\
Identity is taken from the socket's peer credentials when a connection is opened, as \
PostgreSQL's peer authentication does: a connection handed to another process keeps its \
opener's identity. Root and the user the daemon runs as are superusers: they act in every \
organization with admin power, and they alone create organizations and list, show, bind and \
unbind accounts. Every other Unix user acts only through the account its uid is bound to, \
and in an organization only through a membership made active for that uid, within its role \
there (admin > deployer > readonly > viewer). A binding holds while the uid still resolves \
to the user name it was bound as: a reused uid inherits nothing. An activation URL makes \
active exactly the membership it was issued for; one issued with --unix-user, or for an \
account that another organization's invitation bound, can be redeemed by that Unix user \
only. An admin of another organization can never act in yours, learn your members, make an \
account join you, or take over an account your organization bound; the most it can do is \
bind an address that nobody has activated yet, which a superuser undoes with \
compartment account unbind, or with compartment account bind EMAIL --unix-user OWNER: that \
carries over only the memberships a superuser vouched for (a superuser invited, or a \
superuser made the binding they were joined through), prints those it carries and those it \
leaves behind, and carries everything only with --carry-all.";

/// Whom the CLI talks to and how it prints what it is told: the man page's DAEMON TRUST
/// section and the operations guide's paragraph on the CLI (docs/operations.md) say
/// exactly this.
pub const SERVER_TRUST: &str = "\
compartmentctl talks only to a daemon whose socket was opened by root (as systemd's socket \
unit does, whatever user the daemon then runs as) or by the user running compartmentctl, \
unless --trust-server-user NAME (or COMPARTMENT_TRUST_SERVER_USER) names one more Unix user \
to trust, such as the user a daemon runs as when it listens on its own socket. A daemon \
run by a user other than root must also keep its socket in a directory that neither its \
group nor others may write. Any other server is refused, with exit status 3, before anything is sent \
to it, so a socket another user planted never receives an activation URL. In text output, \
every control character (C0, DEL, C1), bidi control and other format character in what \
the daemon sends or the command line gives is shown escaped, as \\u{202e}, so that no \
user or organization name can act on the terminal; --output json prints it as JSON.";

/// Manage who may do what on a Compartment host: organizations, members, roles and
/// invitations, through the local compartmentd daemon.
#[derive(Debug, Parser)]
#[command(
    // The name it was invoked as replaces `bin_name` at parse time (cli::run).
    name = "compartmentctl",
    bin_name = "compartmentctl",
    version,
    propagate_version = true,
    subcommand_required = true,
    arg_required_else_help = true,
    after_help = "Examples:\n  \
        compartmentctl user invite deploy@example.com --role deployer\n  \
        compartmentctl user list --org acme\n  \
        compartmentctl role grant user@example.com deployer\n  \
        compartmentctl activate    (then paste the activation URL at the prompt)"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after the subcommand.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOptions {
    /// The daemon's socket [default: /run/compartment/compartmentd.sock when it exists,
    /// else $XDG_RUNTIME_DIR/compartment/compartmentd.sock, else ~/.local/state/compartment/compartmentd.sock]
    #[arg(long, global = true, env = "COMPARTMENT_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// The organization to act in [default: the one chosen with `org use`, else your only
    /// one]
    #[arg(long, global = true, env = "COMPARTMENT_ORG", value_name = "ORG",
          add = clap_complete::engine::ArgValueCompleter::new(crate::complete::orgs))]
    pub org: Option<String>,

    /// Also talk to a daemon run by this Unix user (one run as a user of its own that
    /// listens itself); one run by root or by you is always trusted, any other is refused
    /// before anything is sent
    #[arg(
        long,
        global = true,
        env = "COMPARTMENT_TRUST_SERVER_USER",
        value_name = "NAME"
    )]
    pub trust_server_user: Option<String>,

    /// How to print results: sentences and tables for people, or one JSON object a line
    /// for scripts
    #[arg(long, global = true, value_enum, default_value_t = OutputFormat::Text, value_name = "FORMAT")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Sentences and aligned tables
    Text,
    /// The daemon's result object as compact JSON; errors as the JSON-RPC error object
    Json,
    /// As json, but a list prints one object per line for each entry (`user list`: one
    /// member a line); other commands print their result object on one line
    Jsonl,
}

impl OutputFormat {
    /// Whether failures are reported as a JSON error object.
    pub fn is_json(self) -> bool {
        matches!(self, OutputFormat::Json | OutputFormat::Jsonl)
    }
}

/// What `audit list` and `audit export` pick out of the log.
#[derive(Debug, Clone, Default, Args)]
pub struct AuditFilters {
    /// Records at or after this time: RFC 3339 (2026-12-07T09:00:00Z), a date, or an age
    /// (2h, 7days)
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Records before this time, as --from
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Only this event (organization.role.grant), or those under a prefix ending in a dot
    /// (organization.user.)
    #[arg(long, value_name = "EVENT")]
    pub event: Option<String>,
    /// Only what this actor did: an e-mail, a Unix user name or a uid
    #[arg(long, value_name = "WHO")]
    pub actor: Option<String>,
    /// Only records about this type of target (account, organization)
    #[arg(long, value_name = "TYPE")]
    pub target_type: Option<String>,
    /// Only records with this outcome: ok, refused, or an error kind
    #[arg(long, value_name = "OUTCOME")]
    pub outcome: Option<String>,
}

/// What `audit export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One record a line, as the daemon keeps it, with its hash
    Jsonl,
    /// A header row, then a row a record
    Csv,
}

/// The statuses `user list --status` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    /// Waiting for activation
    Invited,
    /// Activated
    Active,
    /// The invitation lapsed
    Expired,
}

impl From<StatusFilter> for MemberStatus {
    fn from(filter: StatusFilter) -> MemberStatus {
        match filter {
            StatusFilter::Invited => MemberStatus::Invited,
            StatusFilter::Active => MemberStatus::Active,
            StatusFilter::Expired => MemberStatus::Expired,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Invite, list, remove, block and unblock the members of an organization
    #[command(subcommand)]
    User(UserCommand),

    /// Change a member's role, or list the roles
    #[command(subcommand)]
    Role(RoleCommand),

    /// Activate your account from an invitation, binding it to your Unix user
    #[command(
        long_about = "Activate your account from an invitation, binding it to your Unix user.\n\n\
            Run it with no argument: on a terminal it asks for the activation URL without \
            showing what you paste; otherwise it reads the URL from the first line of \
            standard input. A URL given as an argument still works, but while the command \
            runs any local user can read it from the process list, so it warns.",
        after_help = "Examples:\n  \
            compartmentctl activate                         # paste the URL at the prompt\n  \
            compartmentctl activate < activation-url.txt    # or read it from a file or a pipe"
    )]
    Activate {
        /// The activation URL or its token; better left out, to be asked for (other local
        /// users can read arguments from the process list)
        #[arg(value_name = "URL_OR_TOKEN")]
        token: Option<String>,
    },

    /// Show who the daemon thinks you are, and your organizations
    Whoami,

    /// Create organizations, list them, choose the current one
    #[command(subcommand)]
    Org(OrgCommand),

    /// Accounts and the Unix users they are bound to (superuser only)
    #[command(subcommand)]
    Account(AccountCommand),

    /// The audit log: who did what, and proof that it is whole
    #[command(subcommand)]
    Audit(AuditCommand),

    /// The daemon itself: its status, a backup of its store (superuser only)
    #[command(subcommand)]
    Admin(AdminCommand),

    /// Ask what a user may do
    #[command(subcommand)]
    Auth(AuthCommand),

    /// Watch membership changes as they happen (superusers, services, an organization's
    /// admins)
    #[command(subcommand)]
    Events(EventsCommand),

    /// Check that compartmentd is running and show its version
    Ping,

    /// Print a shell completion script to stdout
    #[command(
        after_help = "Example: compartmentctl completions bash > /etc/bash_completion.d/compartmentctl"
    )]
    Completions {
        /// The shell to complete for
        shell: Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Invite someone to the organization with a role (admin only)
    #[command(
        long_about = "Invite someone to the organization with a role (admin only).\n\n\
            If the address has no active account yet, this prints a single-use activation \
            URL to send to them; they run `compartment activate` as their own Unix user \
            and paste it at the prompt. If it already has an account, access is granted at once and no URL is \
            needed.\n\n\
            The URL lives for the daemon's default invitation lifetime (7 days unless its \
            --invitation-ttl says otherwise), or for --expires-in, at most 30 days.\n\n\
            With --access-until, the membership ends by itself at that time, for a \
            contractor say: from then on every decision about them is no, and they are \
            removed.",
        after_help = "Examples:\n  \
            compartmentctl user invite deploy@example.com --role deployer\n  \
            compartmentctl user invite contractor@example.com --role deployer --access-until 30days"
    )]
    Invite {
        /// The person's e-mail address
        email: String,

        /// The role to give them
        #[arg(long, value_parser = ROLES)]
        role: Role,

        /// How long the activation URL stays valid, e.g. 2h, 3days [default: the daemon's,
        /// 7 days] [minimum: 1s] [maximum: 30 days]
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_text)]
        expires_in: Option<String>,

        /// Issue a new activation URL for a pending invitation, revoking the old one
        #[arg(long)]
        resend: bool,

        /// Only this Unix user may redeem the activation URL
        #[arg(long, value_name = "NAME")]
        unix_user: Option<String>,

        /// End the membership by itself then: an RFC 3339 time (2026-12-14T00:00:00Z) or a
        /// duration from now (30days) [default: it lasts until removed]
        #[arg(long, value_name = "TIME", value_parser = parse_until_text)]
        access_until: Option<String>,
    },

    /// List the organization's members with their role and status, by e-mail
    ///
    /// Without --page, every member, printed as the daemon's pages arrive: the table's
    /// columns are as wide as the first thousand members need and widen, from the row that
    /// needs it, when a later member's cell is wider.
    List {
        /// Print only this page of --per-page members (1 is the first)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        page: Option<u32>,

        /// Members per page with --page (alone, it prints the first page) [default: 100]
        /// [maximum: 1000]
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        per_page: Option<u32>,

        /// Only members with this status
        #[arg(long, value_enum, value_name = "STATUS")]
        status: Option<StatusFilter>,
    },

    /// Remove a member, or revoke their invitation, at once
    Remove {
        /// The member's e-mail address
        email: String,
    },

    /// Block a member: they can do nothing in the organization until unblocked (admin only)
    #[command(
        long_about = "Block a member (admin only): from this instant every decision about \
            them in the organization is no, until `user unblock`, or until the time --until \
            names.\n\n\
            The member keeps their role and their binding. The reason is what they, and every \
            service that asks about them, are told; the change feed says member.blocked, so \
            that services can end their sessions. A block never leaves the organization \
            without an admin whom nothing bounds (no block, no end of access, no role held \
            --until).",
        after_help = "Examples:\n  \
            compartmentctl user block alice@example.com --reason \"laptop lost\"\n  \
            compartmentctl user block bob@example.com --reason \"on leave\" --until 2026-12-14T00:00:00Z"
    )]
    Block {
        /// The member's e-mail address
        email: String,

        /// Why, in your words: shown to the member and to every service that asks about
        /// them [1 to 500 characters]
        #[arg(long, value_name = "TEXT")]
        reason: String,

        /// Lift the block by itself then: an RFC 3339 time (2026-12-14T00:00:00Z) or a
        /// duration from now (3days) [default: until `user unblock`]
        #[arg(long, value_name = "TIME", value_parser = parse_until_text)]
        until: Option<String>,
    },

    /// Lift a member's block at once (admin only)
    Unblock {
        /// The member's e-mail address
        email: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum RoleCommand {
    /// Give a member a role, up to your own; with --until, only for a while
    #[command(
        long_about = "Give a member a role, up to your own.\n\n\
            With --until, the role is theirs only until then: a role above the one they hold \
            now, which falls back by itself to the one they held before. An organization \
            always keeps an admin whom nothing bounds; an admin until a time does not count \
            as one.",
        after_help = "Examples:\n  \
            compartmentctl role grant user@example.com deployer\n  \
            compartmentctl role grant oncall@example.com admin --until 8h"
    )]
    Grant {
        /// The member's e-mail address
        email: String,

        /// The new role, at most your own
        #[arg(value_parser = ROLES)]
        role: Role,

        /// Hold the role only until then, and the role held before again after: an RFC 3339
        /// time (2026-12-14T00:00:00Z) or a duration from now (8h); only for a role above
        /// the member's
        #[arg(long, value_name = "TIME", value_parser = parse_until_text)]
        until: Option<String>,
    },

    /// List the roles and what each may do
    List,

    /// Show a role and every permission it holds
    Show {
        /// The role
        #[arg(value_parser = ROLES)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Write the whole store, from one consistent snapshot, to FILE as JSON lines
    ///
    /// FILE is written by this command, mode 0600: it appears whole, by rename, once the
    /// daemon has sent everything, or not at all (a FILE already there is left untouched on
    /// failure). Restore it with `compartmentd restore FILE`, into either store.
    Backup {
        /// The file to write
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },

    /// Show the daemon's version, store, uptime, connections, writer, sweeper and feed
    #[command(
        long_about = "Show the daemon's version and schema, its store (the redb file, or \
            PostgreSQL's hosts, port, database and user, never a password) and whether it \
            is reachable, its uptime, the connections open, the writer's queue and last \
            batch, the last sweep, the change feed's head and, on PostgreSQL, how many \
            write transactions were run again after conflicting with another daemon's. \
            It answers from what the daemon keeps of itself, without asking the store, so \
            it answers while the store is out of reach."
    )]
    Status,

    /// Print the daemon's metrics in Prometheus' text format
    #[command(
        long_about = "Print the daemon's metrics in Prometheus' text format (version 0.0.4): \
            requests by method and outcome with their latency, connections and why any were \
            refused, the writer's batches and commits, the sweeper, the change feed's \
            subscribers and how far behind they are, the store. The same text the daemon \
            writes for node_exporter's textfile collector with --metrics-textfile; \
            `promtool check metrics` reads it."
    )]
    Metrics,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print each change to memberships and bindings as it happens, a line each, until
    /// interrupted
    #[command(
        long_about = "Print each change to memberships and bindings as it happens, a line \
            each, until interrupted: members added, activated, given another role, expired, \
            blocked, unblocked or removed, warnings that a member's access or raised role \
            ends soon, and accounts bound or unbound. Each has a sequence number (#N); with \
            --after N, the changes since N come first, so that nothing is missed between two \
            watches.\n\n\
            Superusers and members of the daemon's --service-group see every organization, or \
            the one --org names; an organization's admins see their organization's changes \
            only, for as long as they stay its admins.",
        after_help = "Examples:\n  \
            compartmentctl events watch --org acme\n  \
            compartmentctl events watch --after 1041 --output jsonl    (one JSON object a change)"
    )]
    Watch {
        /// Begin with the changes after this sequence number [default: only new ones]
        #[arg(long, value_name = "N")]
        after: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Say whether you (or, for services and superusers, someone else) may do something
    #[command(
        long_about = "Say whether you, or someone else, may do something in an organization, \
            exactly as the daemon's rules decide at this instant: prints yes or no and why \
            (the role and where it came from), and exits 0 for yes and 4 for no, like \
            kubectl auth can-i.\n\n\
            Anyone may ask about themselves. Asking about another user (--user or --email) \
            is for superusers and for members of the daemon's --service-group.\n\n\
            The organization is --org, else the current one of the user asked about.",
        after_help = "Examples:\n  \
            compartmentctl auth can deployment.create --org acme\n  \
            compartmentctl auth can variable.value.read --user alice --org acme    (a service or root)\n  \
            compartmentctl role show deployer    (the permissions a role holds)"
    )]
    Can {
        /// The permission, by its key (compartment role show admin lists them all)
        #[arg(value_parser = PERMISSIONS, value_name = "PERMISSION")]
        permission: Permission,

        /// Ask about this Unix user instead of yourself
        #[arg(long, value_name = "NAME", conflicts_with = "email")]
        user: Option<String>,

        /// Ask about the account with this e-mail address instead of yourself
        #[arg(long, value_name = "EMAIL")]
        email: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List the audit log's records, oldest first: a superuser's of the whole host (or of
    /// --org), an admin's of their organization
    #[command(after_help = "Examples:\n  \
        compartmentctl audit list --from 1day\n  \
        compartmentctl --org acme audit list --event organization.user. --output jsonl\n  \
        compartmentctl audit list --outcome refused --follow")]
    List {
        #[command(flatten)]
        filters: AuditFilters,
        /// Keep printing records as they are appended, like `journalctl -f` (until
        /// interrupted); with --output text or jsonl
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Print the records for a SIEM or an archive: one JSON object a line with its hash
    /// (jsonl), or CSV with a header row; the same filters and readers as `audit list`
    #[command(after_help = "Examples:\n  \
        compartmentctl audit export --from 2026-12-01 --to 2026-12-08 > audit-week-49.jsonl\n  \
        compartmentctl audit export --format csv --event organization.role.grant > grants.csv")]
    Export {
        /// jsonl (as `audit list --output jsonl`) or csv
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl, value_name = "FORMAT")]
        format: ExportFormat,
        #[command(flatten)]
        filters: AuditFilters,
    },
    /// Check that the audit log is whole: every record from the first kept one follows
    /// from the one before, and the log still holds what a checkpoint covered (superuser
    /// only); exits 1 when it is not
    Verify {
        /// A checkpoint kept elsewhere (as `audit checkpoint` printed it)
        #[arg(long, value_name = "FILE")]
        checkpoint: Option<std::path::PathBuf>,
    },
    /// Sign a checkpoint of the audit log's last record and print it, to keep somewhere
    /// this host cannot change (superuser only)
    #[command(
        after_help = "Example: compartmentctl audit checkpoint > audit-$(date +%F).checkpoint"
    )]
    Checkpoint,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// List every account with its Unix user and how it was bound
    List,

    /// Show an account: its binding and its memberships
    Show {
        /// The account's e-mail address
        email: String,
    },

    /// Free an account from its Unix user (break-glass). Its memberships stay, pinned to
    /// the old uid, until a superuser binds the account again
    Unbind {
        /// The account's e-mail address
        email: String,
    },

    /// Change an account's e-mail: its Unix user, memberships and pending invitations
    /// (their URLs keep working) follow
    #[command(after_help = "Records and events written before keep the old address, as history.")]
    Rename {
        /// The account's e-mail address
        email: String,

        /// Its new e-mail address
        new_email: String,
    },

    /// Delete an account that is a member nowhere; with --force, also one that is, removing
    /// it from every organization. Its Unix user, if any, is unbound
    Delete {
        /// The account's e-mail address
        email: String,

        /// Delete it even while it is a member somewhere: its memberships go with it (an
        /// organization's last admin is never removed)
        #[arg(long)]
        force: bool,
    },

    /// Bind an account to a Unix user on your word, moving it from any user that held it
    /// and carrying over the memberships a superuser vouched for
    Bind {
        /// The account's e-mail address
        email: String,

        /// The Unix user to bind it to
        #[arg(long, value_name = "NAME")]
        unix_user: String,

        /// Carry every active membership over, also those made through a binding that only
        /// an organization vouched for (which a squatter may have accepted)
        #[arg(long)]
        carry_all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization and invite its first admin (superuser only)
    Create {
        /// The organization's name: lowercase letters, digits and dashes, starting with a
        /// letter
        name: String,

        /// E-mail address of the organization's first admin
        #[arg(long, value_name = "EMAIL")]
        admin: String,

        /// Only this Unix user may redeem the first admin's activation URL
        #[arg(long, value_name = "NAME")]
        admin_unix_user: Option<String>,

        /// How long the first admin's activation URL stays valid, as for `user invite`
        /// [default: the daemon's --invitation-ttl, 7 days] [minimum: 1s] [maximum: 30 days]
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_text)]
        expires_in: Option<String>,
    },

    /// List the organizations you belong to
    List,

    /// Make an organization the current one for your later commands
    Use {
        /// The organization's name
        name: String,
    },

    /// Map a Unix group to a role in an organization: its users act there with that role
    /// without an invitation (superuser only)
    #[command(
        name = "map-group",
        after_help = "A member who is also in a mapped group acts with the higher of the two \
        roles. A user taken out of the group loses what it gives within 5 seconds (the \
        daemon's group lookup cache). Admins by a group do not count for the last-admin rule."
    )]
    MapGroup {
        /// The organization's name
        name: String,

        /// The Unix group's name (getent group NAME shows it)
        group: String,

        /// The role its users act with
        #[arg(value_parser = ROLES)]
        role: Role,
    },

    /// End a Unix group's mapping (superuser only)
    #[command(name = "unmap-group")]
    UnmapGroup {
        /// The organization's name
        name: String,

        /// The group, by the name it was mapped with or by its gid
        group: String,
    },

    /// Rename an organization: its members, invitations (their URLs keep working), feed
    /// and audit log follow (superuser only)
    #[command(
        after_help = "Records and events written before keep the old name, as history; \
        `org use` of it and live feeds of it move to the new name."
    )]
    Rename {
        /// The organization's name
        name: String,

        /// Its new name: 1 to 63 lowercase letters, digits and dashes, starting with a letter
        new_name: String,
    },

    /// Delete an organization that has no members (pending invitations are revoked);
    /// with --force, also one that has, removing them (superuser only)
    #[command(
        after_help = "Its records stay in the audit log; an organization created later \
        under the same name starts afresh."
    )]
    Delete {
        /// The organization's name
        name: String,

        /// Delete it even while it has members: they are removed with it, and told on the
        /// change feed
        #[arg(long)]
        force: bool,
    },
}

/// Parses a value by its name with the type's own `FromStr`, so a wrong name gets the
/// wire's sentence (which lists the roles, or points at the permission keys), while help
/// and completions still learn every name from `names`.
#[derive(Clone, Copy)]
struct ByName<T> {
    names: fn() -> Vec<PossibleValue>,
    parsed: std::marker::PhantomData<fn() -> T>,
}

impl<T> ByName<T> {
    const fn new(names: fn() -> Vec<PossibleValue>) -> ByName<T> {
        ByName {
            names,
            parsed: std::marker::PhantomData,
        }
    }
}

impl<T> TypedValueParser for ByName<T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        (|text: &str| text.parse::<T>()).parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new((self.names)().into_iter()))
    }
}

/// The four role names.
const ROLES: ByName<Role> = ByName::new(|| {
    Role::ALL
        .into_iter()
        .map(|role| PossibleValue::new(role.as_str()))
        .collect()
});

/// Every permission key, with what it allows.
const PERMISSIONS: ByName<Permission> = ByName::new(|| {
    Permission::ALL
        .iter()
        .map(|permission| PossibleValue::new(permission.key()).help(permission.what()))
        .collect()
});

/// Checks a duration locally so a typo, or a lifetime under a second (which would issue
/// a URL expired on arrival, since expiry times are whole seconds), is a usage error before
/// anything is sent; keeps the text as typed, since the daemon owns the lifetime rules and
/// reads the same form.
fn parse_duration_text(text: &str) -> Result<String, String> {
    let duration = humantime::parse_duration(text).map_err(|err| err.to_string())?;
    if duration < std::time::Duration::from_secs(1) {
        return Err("an activation URL must live at least one second".to_owned());
    }
    Ok(text.to_owned())
}

/// Checks an end (`--until`, `--access-until`) locally so a typo is a usage error before
/// anything is sent: a duration from now of at least a second, an RFC 3339 time, or a date
/// alone. Keeps the text as typed: the daemon reads it against its own clock and owns the
/// rules (an end already past, say).
fn parse_until_text(text: &str) -> Result<String, String> {
    if let Ok(duration) = humantime::parse_duration(text) {
        if duration < std::time::Duration::from_secs(1) {
            return Err("an end must be at least one second from now".to_owned());
        }
        return Ok(text.to_owned());
    }
    let time = if text.len() == 10 {
        format!("{text}T00:00:00Z")
    } else {
        text.to_owned()
    };
    match humantime::parse_rfc3339_weak(&time) {
        Ok(_) => Ok(text.to_owned()),
        Err(_) => {
            Err("give a time (2026-12-14T00:00:00Z) or a duration from now (8h, 30days)".to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_operations_guide_states_the_trust_model_in_the_man_pages_words() {
        let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let readme = words(include_str!("../../docs/operations.md"));
        assert!(
            readme.contains(&words(TRUST_MODEL)),
            "docs/operations.md's \"Trust model\" section must say what TRUST_MODEL says"
        );
    }

    #[test]
    fn the_operations_guide_says_whom_the_cli_talks_to_in_the_man_pages_words() {
        let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let readme = words(include_str!("../../docs/operations.md"));
        assert!(
            readme.contains(&words(SERVER_TRUST)),
            "docs/operations.md must say what SERVER_TRUST says"
        );
    }

    #[test]
    fn an_end_is_a_time_or_a_duration_from_now() {
        for good in ["8h", "30days", "2026-12-14T00:00:00Z", "2026-12-14"] {
            assert_eq!(parse_until_text(good).as_deref(), Ok(good), "{good}");
        }
        assert_eq!(
            parse_until_text("0s"),
            Err("an end must be at least one second from now".to_owned())
        );
        for bad in ["soon", "", "2026-13-01", "tomorrow"] {
            assert_eq!(
                parse_until_text(bad),
                Err(
                    "give a time (2026-12-14T00:00:00Z) or a duration from now (8h, 30days)"
                        .to_owned()
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn expires_in_is_at_least_a_second() {
        assert_eq!(parse_duration_text("1s").as_deref(), Ok("1s"));
        assert_eq!(parse_duration_text("2days").as_deref(), Ok("2days"));
        for short in ["0s", "999ms", "500ms", "0days"] {
            assert_eq!(
                parse_duration_text(short),
                Err("an activation URL must live at least one second".to_owned()),
                "{short}"
            );
        }
    }
}
