//! Signed checkpoints of the audit log: the number and hash of its last record, signed
//! with the daemon's own ed25519 key, in the C2SP signed-note format, for an operator to
//! keep where the daemon's host cannot reach. Given back to `audit verify`, a checkpoint
//! proves that the log still holds, unchanged, every record it covered.
//!
//! A note's text is the origin (`<host>/compartment-audit`), the number of the last record,
//! its hash in base64, and `time <RFC 3339>`, each on its own line; then an empty line and
//! the signature line: `— <origin> <base64 of the key id (4 bytes) and the signature>`.
//! The key id is the first 4 bytes of SHA-256(origin ‖ "\n" ‖ 0x01 ‖ public key), as
//! signed notes name ed25519 keys.

use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::store::chain::{timestamp, Anchor};
use crate::store::{ChainHash, Changes, Millis};
use tokio_util::sync::CancellationToken;

use crate::writer::Writer;

/// The file in the state directory that holds the key's 32 secret bytes.
pub const KEY_FILE: &str = "audit-signing.key";

/// The daemon's signing key, and the name its notes carry; and the keys of the other
/// daemons sharing its store, whose checkpoints it trusts as its own.
pub struct Signer {
    key: SigningKey,
    origin: String,
    id: [u8; 4],
    peers: Vec<Peer>,
}

/// Another daemon's verifier key (`--audit-peer-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    origin: String,
    id: [u8; 4],
    key: VerifyingKey,
}

impl Peer {
    /// A signed-note verifier key, `<origin>+<key id, hex>+<base64 of 0x01 and the key>`,
    /// as each daemon logs its own at start.
    pub fn parse(text: &str) -> Result<Peer, String> {
        let malformed =
            || format!("{text:?} is not a verifier key (ORIGIN+ID+KEY, as a daemon logs its own)");
        // The origin holds no `+`; the key's base64 may.
        let mut parts = text.splitn(3, '+');
        let (Some(origin), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(malformed());
        };
        let bytes = STANDARD.decode(key).map_err(|_| malformed())?;
        let key = match bytes.split_first() {
            Some((0x01, key)) => <[u8; 32]>::try_from(key).map_err(|_| malformed())?,
            _ => return Err(malformed()),
        };
        let key = VerifyingKey::from_bytes(&key).map_err(|_| malformed())?;
        let expected = key_id(origin, &key);
        if !id.eq_ignore_ascii_case(&crate::store::chain::hex(&expected)) {
            return Err(format!(
                "{text:?}: its key id is not that of its origin and key"
            ));
        }
        Ok(Peer {
            origin: origin.to_owned(),
            id: expected,
            key,
        })
    }
}

/// What a checkpoint says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub seq: u64,
    pub hash: ChainHash,
    pub time: Option<String>,
}

impl Signer {
    /// The key in `path`, made (private to the daemon's user) when there is none yet.
    pub fn load_or_create(path: &Path, origin: String) -> io::Result<Signer> {
        let secret: [u8; 32] = match std::fs::read(path) {
            Ok(bytes) => bytes.as_slice().try_into().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} holds {} bytes, not an ed25519 key's 32",
                        path.display(),
                        bytes.len()
                    ),
                )
            })?,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|err| io::Error::other(err.to_string()))?;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                file.write_all(&secret)?;
                file.sync_all()?;
                secret
            }
            Err(err) => return Err(err),
        };
        Ok(Signer::from_secret(&secret, origin))
    }

    pub fn from_secret(secret: &[u8; 32], origin: String) -> Signer {
        let key = SigningKey::from_bytes(secret);
        let id = key_id(&origin, &key.verifying_key());
        Signer {
            key,
            origin,
            id,
            peers: Vec::new(),
        }
    }

    /// Trusts the checkpoints of `peers` too: the daemons sharing the store.
    pub fn with_peers(mut self, peers: Vec<Peer>) -> Signer {
        self.peers = peers;
        self
    }

    /// The origin its notes name.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public key as a signed-note verifier key: `<origin>+<id hex>+<base64>`.
    pub fn verifier_key(&self) -> String {
        let mut bytes = vec![0x01];
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        format!(
            "{}+{}+{}",
            self.origin,
            crate::store::chain::hex(&self.id),
            STANDARD.encode(bytes)
        )
    }

    /// The signed note of record `seq` with hash `hash`, at `now`.
    pub fn sign(&self, seq: u64, hash: &ChainHash, now: Millis) -> String {
        let body = format!(
            "{}\n{seq}\n{}\ntime {}\n",
            self.origin,
            STANDARD.encode(hash),
            timestamp(now)
        );
        let signature = self.key.sign(body.as_bytes());
        let mut signed = self.id.to_vec();
        signed.extend_from_slice(&signature.to_bytes());
        format!(
            "{body}\n\u{2014} {} {}\n",
            self.origin,
            STANDARD.encode(signed)
        )
    }

    /// What `note` says, when this key or a peer's signed it; otherwise why it is not to
    /// be trusted.
    pub fn verify(&self, note: &str) -> Result<Checkpoint, String> {
        let (body, signatures) = note
            .split_once("\n\n")
            .ok_or("it is not a signed note: no empty line before its signatures")?;
        let body = format!("{body}\n");
        let checkpoint = parse_body(&body)?;
        let own = Peer {
            origin: self.origin.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        };
        let trusted: Vec<&Peer> = std::iter::once(&own).chain(&self.peers).collect();
        let mut ours = None;
        for line in signatures.lines().filter(|line| !line.is_empty()) {
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| format!("{line:?} is not a signature line"))?;
            let (name, signed) = rest
                .rsplit_once(' ')
                .ok_or_else(|| format!("{line:?} is not a signature line"))?;
            let signed = STANDARD
                .decode(signed)
                .map_err(|_| format!("the signature of {name} is not base64"))?;
            let signer = trusted
                .iter()
                .find(|peer| name == peer.origin && signed.len() == 68 && signed[..4] == peer.id);
            if let Some(signer) = signer {
                ours = Some((signer.key, signed));
            }
        }
        let (key, signed) = ours.ok_or_else(|| {
            format!(
                "it carries no signature of this daemon's key ({}) nor of a peer's \
                 (--audit-peer-key)",
                self.verifier_key()
            )
        })?;
        let signature = Signature::from_slice(&signed[4..])
            .map_err(|_| "its signature is malformed".to_owned())?;
        key.verify_strict(body.as_bytes(), &signature)
            .map_err(|_| "its signature does not verify: the note was changed".to_owned())?;
        Ok(checkpoint)
    }
}

/// The daemon's key, and the last record it knows the log held: what `audit verify`
/// holds the log to besides the checkpoints, so that a log cut short while the daemon runs
/// is found even before the next checkpoint.
pub struct Keeper {
    pub signer: Signer,
    known: Mutex<Option<(u64, ChainHash)>>,
    /// How often the daemon signs and keeps a checkpoint of its own.
    pub interval: Duration,
}

impl Keeper {
    pub fn new(signer: Signer, interval: Duration) -> Keeper {
        Keeper {
            signer,
            known: Mutex::new(None),
            interval,
        }
    }

    /// Notes that the log held record `seq` with `hash`; a later record replaces an
    /// earlier one.
    pub fn saw(&self, seq: u64, hash: ChainHash) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        if known.is_none_or(|(last, _)| last <= seq) {
            *known = Some((seq, hash));
        }
    }

    /// The last record this daemon saw the log hold, as an anchor.
    pub fn known(&self) -> Option<Anchor> {
        let known = *self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.map(|(seq, hash)| Anchor {
            seq,
            hash,
            source: "what this daemon last saw the log hold".to_owned(),
        })
    }
}

/// The key id of `key` named `origin`.
fn key_id(origin: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(origin.as_bytes());
    hasher.update(b"\n\x01");
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The checkpoint a note's text states.
fn parse_body(body: &str) -> Result<Checkpoint, String> {
    let mut lines = body.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or("it names no origin")?;
    let seq = lines
        .next()
        .and_then(|line| line.parse().ok())
        .ok_or("its second line is not a record number")?;
    let hash = lines
        .next()
        .and_then(|line| STANDARD.decode(line).ok())
        .and_then(|bytes| ChainHash::try_from(bytes).ok())
        .ok_or("its third line is not a hash in base64")?;
    let time = lines
        .find_map(|line| line.strip_prefix("time "))
        .map(str::to_owned);
    Ok(Checkpoint {
        origin: origin.to_owned(),
        seq,
        hash,
        time,
    })
}

/// Signs and keeps a checkpoint of the log every [`Keeper::interval`] while it grows, and
/// logs it, so that the journal (and whatever the operator forwards it to) holds the
/// newest one too. Ends when `stop` is cancelled.
pub async fn keep(keeper: Arc<Keeper>, writer: Writer, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(keeper.interval) => {}
            () = stop.cancelled() => return,
        }
        let audit = keeper.clone();
        let signed = writer
            .write(move |txn, now| sign_if_grown(txn, &audit.signer, now))
            .await;
        match signed {
            Ok(Some((seq, hash, note))) => {
                keeper.saw(seq, hash);
                tracing::info!(
                    seq,
                    hash = %crate::store::chain::hex(&hash),
                    "audit checkpoint signed and kept: {}",
                    note.replace('\n', " | ")
                );
            }
            Ok(None) => {}
            Err(err) => tracing::error!(error = %err, "cannot sign a checkpoint of the audit log"),
        }
    }
}

/// A checkpoint of the log's last record, kept in `txn`, unless the newest kept is of it.
fn sign_if_grown(
    txn: &impl Changes,
    signer: &Signer,
    now: Millis,
) -> Result<Option<(u64, ChainHash, String)>, crate::rules::RuleError> {
    let Some((seq, hash)) = txn.audit_head()? else {
        return Ok(None);
    };
    if txn
        .latest_checkpoint()?
        .is_some_and(|(kept, _)| kept >= seq)
    {
        return Ok(None);
    }
    let note = signer.sign(seq, &hash, now);
    txn.put_checkpoint(seq, &note)?;
    Ok(Some((seq, hash, note)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn signer() -> Signer {
        Signer::from_secret(&[7; 32], "host.example/compartment-audit".into())
    }

    #[test]
    fn a_note_reads_back_as_it_was_signed_and_any_change_is_refused() {
        let signer = signer();
        let note = signer.sign(42, &[9; 32], 1_796_601_600_000);
        assert!(note.starts_with(
            "host.example/compartment-audit\n42\nCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=\ntime 2026-12-07T00:00:00.000Z\n\n\u{2014} host.example/compartment-audit "
        ), "{note}");
        assert_eq!(
            signer.verify(&note).unwrap(),
            Checkpoint {
                origin: "host.example/compartment-audit".into(),
                seq: 42,
                hash: [9; 32],
                time: Some("2026-12-07T00:00:00.000Z".into()),
            }
        );
        let changed = note.replacen("\n42\n", "\n41\n", 1);
        assert_eq!(
            signer.verify(&changed).unwrap_err(),
            "its signature does not verify: the note was changed"
        );
        let other = Signer::from_secret(&[8; 32], "host.example/compartment-audit".into());
        assert!(other
            .verify(&note)
            .unwrap_err()
            .starts_with("it carries no signature of this daemon's key"));
        assert!(signer.verify("nonsense").is_err());
    }

    #[test]
    fn a_peers_checkpoints_are_trusted_once_its_key_is_given_and_only_then() {
        let ours = signer();
        let peer = Signer::from_secret(&[8; 32], "other.example/compartment-audit".into());
        let note = peer.sign(7, &[1; 32], 1_796_601_600_000);
        assert!(ours.verify(&note).is_err());
        let key = Peer::parse(&peer.verifier_key()).unwrap();
        let ours = ours.with_peers(vec![key]);
        assert_eq!(ours.verify(&note).unwrap().seq, 7);
        assert!(ours.verify(&note.replacen("\n7\n", "\n8\n", 1)).is_err());
        // A third key, under the peer's name, is still nobody's.
        let impostor = Signer::from_secret(&[9; 32], "other.example/compartment-audit".into());
        assert!(ours.verify(&impostor.sign(7, &[1; 32], 0)).is_err());
        // A verifier key that does not hold together is refused at start.
        let text = peer.verifier_key();
        assert!(Peer::parse("nonsense").is_err());
        assert!(Peer::parse(&text.replacen("other.example", "else.example", 1)).is_err());
        assert!(Peer::parse(&text[..text.len() - 10]).is_err());
    }

    #[test]
    fn the_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let made = Signer::load_or_create(&path, "o".into()).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let read = Signer::load_or_create(&path, "o".into()).unwrap();
        assert_eq!(made.verifier_key(), read.verifier_key());
        std::fs::write(&path, b"short").unwrap();
        assert!(Signer::load_or_create(&path, "o".into()).is_err());
    }
}
