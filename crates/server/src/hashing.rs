//! Password hashing on threads of its own, one per core, each reusing one argon2
//! memory area.
//!
//! argon2id at the OWASP parameters (m=19 MiB, t=2, p=1) fills 19 MiB per hash.
//! On tokio's blocking pool every one of its many threads got a malloc arena of
//! its own and kept its 19 MiB there: 20 concurrent upgrades left the server at
//! 430–640 MiB, more than Better Auth. Here the area is allocated once per hashing
//! thread and reused, so hashing holds at most cores × 19 MiB; more than one hash
//! per core would only make each one slower. Requests wait in the queue, and a
//! request whose client has gone is skipped, not hashed.
//!
//! The queue is bounded per server by [`HashQueue`] (`passwordHashQueue`): a
//! request takes a slot before it queues and gives it back when its hash is
//! done (or its client left). With every slot taken the request is answered
//! at once with 503 `BUSY` and `Retry-After`, so a flood of sign-ins costs a
//! refusal each instead of a wait that grows for everyone. A hash whose
//! client left mid-hash still finishes on its thread, so at most one hash per
//! core runs beyond the slots.
//!
//! The PHC strings are exactly what `argon2`'s `PasswordHasher` writes and reads;
//! the tests check both directions against it.

use std::panic::AssertUnwindSafe;
use std::sync::{mpsc, Arc, LazyLock, Mutex};

use argon2::password_hash::{
    self, rand_core::OsRng, Output, ParamsString, PasswordHash, Salt, SaltString,
};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::Failure;

/// A stored hash asking for more memory than this is refused rather than
/// allocated (ours use 19 MiB; this is 256 MiB).
const MAX_BLOCKS: usize = 256 * 1024;

type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

static QUEUE: LazyLock<Option<mpsc::Sender<Job>>> = LazyLock::new(start);

fn start() -> Option<mpsc::Sender<Job>> {
    let (jobs, queue) = mpsc::channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut started = 0;
    for i in 0..cores {
        let queue = Arc::clone(&queue);
        let spawned = std::thread::Builder::new()
            .name(format!("password-hash-{i}"))
            .spawn(move || work(&queue));
        if spawned.is_ok() {
            started += 1;
        }
    }
    (started > 0).then_some(jobs)
}

fn work(queue: &Mutex<mpsc::Receiver<Job>>) {
    let mut memory = Vec::new();
    loop {
        // The lock is held only while waiting for the next job, not while hashing.
        let next = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = next else { return };
        // A panicking hash fails its own request (its reply is dropped), not the thread.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory)));
    }
}

async fn run<T: Send + 'static>(
    f: impl FnOnce(&mut Vec<Block>) -> T + Send + 'static,
) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move |memory| {
        if !reply.is_closed() {
            let _ = reply.send(f(memory));
        }
    });
    QUEUE.as_ref()?.send(job).ok()?;
    answer.await.ok()
}

/// argon2id with the crate defaults (the OWASP recommended m=19 MiB, t=2, p=1), as
/// a PHC string. `None` if it could not be made.
pub async fn hash_password(password: String) -> Option<String> {
    run(move |memory| hash_with(memory, password.as_bytes()).ok()).await?
}

/// False for a wrong password and for a malformed stored hash alike; `None` only
/// if the check could not run.
pub async fn verify_password(password: String, stored: String) -> Option<bool> {
    run(move |memory| verify_with(memory, password.as_bytes(), &stored)).await
}

/// The slots of one server's hashing (see the module doc).
#[derive(Debug, Clone)]
pub struct HashQueue {
    slots: Arc<Semaphore>,
    capacity: usize,
}

/// A taken slot: the one hash it admits runs while it is held.
#[derive(Debug)]
pub struct HashSlot(OwnedSemaphorePermit);

/// What a caller is told to wait when the queue is full, in seconds.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

impl HashQueue {
    /// At least one slot, whatever `capacity` says.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
        }
    }

    /// Hashes waiting or running now (the metrics' gauge).
    pub fn in_use(&self) -> usize {
        self.capacity.saturating_sub(self.slots.available_permits())
    }

    /// A slot, or 503 `BUSY` with `Retry-After` when every slot is taken.
    pub fn try_slot(&self) -> Result<HashSlot, Failure> {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => Ok(HashSlot(permit)),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {
                let mut busy = Failure::new(guestpass_proto::ErrorCode::Busy);
                busy.retry_after_secs = Some(BUSY_RETRY_AFTER_SECS);
                Err(busy)
            }
        }
    }
}

impl HashSlot {
    /// [`verify_password`] in this slot.
    pub async fn verify(self, password: String, stored: String) -> Option<bool> {
        let answer = verify_password(password, stored).await;
        drop(self.0);
        answer
    }

    /// [`hash_password`] in this slot.
    pub async fn hash(self, password: String) -> Option<String> {
        let answer = hash_password(password).await;
        drop(self.0);
        answer
    }
}

fn hash_with(memory: &mut Vec<Block>, password: &[u8]) -> password_hash::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let hash = phc(
        memory,
        password,
        Algorithm::default(),
        Version::default(),
        Params::default(),
        salt.as_salt(),
    )?;
    Ok(hash.to_string())
}

fn verify_with(memory: &mut Vec<Block>, password: &[u8], stored: &str) -> bool {
    let Ok(hash) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) =
        (Algorithm::try_from(hash.algorithm), Params::try_from(&hash))
    else {
        return false;
    };
    let Ok(version) = hash.version.map(Version::try_from).transpose() else {
        return false;
    };
    match phc(
        memory,
        password,
        algorithm,
        version.unwrap_or_default(),
        params,
        salt,
    ) {
        // `Output`'s equality is constant-time.
        Ok(computed) => computed.hash.is_some_and(|got| got == expected),
        Err(_) => false,
    }
}

/// What `Argon2::hash_password` does, in `memory` instead of a fresh allocation.
fn phc<'a>(
    memory: &mut Vec<Block>,
    password: &[u8],
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt<'a>,
) -> password_hash::Result<PasswordHash<'a>> {
    let blocks = params.block_count();
    if blocks > MAX_BLOCKS {
        return Err(password_hash::Error::ParamValueInvalid(
            password_hash::errors::InvalidValue::TooLong,
        ));
    }
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes)?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let output = Output::init_with(
        params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN),
        |out| {
            Ok(argon.hash_password_into_with_memory(password, salt_bytes, out, &mut memory[..])?)
        },
    )?;
    Ok(PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(&params)?,
        salt: Some(salt),
        hash: Some(output),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    #[tokio::test]
    async fn hashes_are_the_crates_own_in_both_directions() {
        let ours = hash_password("correct horse".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(Argon2::default()
            .verify_password(b"correct horse", &parsed)
            .is_ok());
        assert!(Argon2::default()
            .verify_password(b"correct horsf", &parsed)
            .is_err());

        let salt = SaltString::generate(&mut OsRng);
        let theirs = Argon2::default()
            .hash_password(b"battery staple", &salt)
            .unwrap()
            .to_string();
        assert_eq!(
            verify_password("battery staple".into(), theirs.clone()).await,
            Some(true)
        );
        assert_eq!(
            verify_password("battery stapler".into(), theirs).await,
            Some(false)
        );
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let queue = HashQueue::new(2);
        let a = queue.try_slot().unwrap();
        let _b = queue.try_slot().unwrap();
        let busy = queue.try_slot().unwrap_err();
        assert_eq!(busy.error.code, guestpass_proto::ErrorCode::Busy);
        assert_eq!(busy.status.as_u16(), 503);
        assert_eq!(busy.retry_after_secs, Some(BUSY_RETRY_AFTER_SECS));
        // A finished hash gives its slot back.
        assert!(a.hash("pw".into()).await.is_some());
        assert!(queue.try_slot().is_ok());
        assert!(HashQueue::new(0).try_slot().is_ok(), "at least one slot");
    }

    #[tokio::test]
    async fn other_parameters_and_malformed_hashes() {
        // A hash made with other (lighter) parameters still verifies with its own.
        let light = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8 * 1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let stored = light.hash_password(b"pw", &salt).unwrap().to_string();
        assert_eq!(
            verify_password("pw".into(), stored.clone()).await,
            Some(true)
        );
        assert_eq!(verify_password("px".into(), stored).await, Some(false));
        for junk in [
            "",
            "$argon2id$",
            "not a hash",
            "$argon2id$v=19$m=999999999,t=2,p=1$c2FsdHNhbHQ$aGFzaA",
        ] {
            assert_eq!(
                verify_password("pw".into(), junk.into()).await,
                Some(false),
                "{junk}"
            );
        }
    }
}
