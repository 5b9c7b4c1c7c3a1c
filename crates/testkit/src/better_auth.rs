//! A real, stock Better Auth server for the `better-auth` dialect tests:
//! `node tests/peers/better-auth/server.mjs` on a free loopback port, ready when it
//! prints `{"port":N}`.

use crate::node_peer::{peer_dir, NodePeer};

pub struct BetterAuthPeer {
    pub base_url: String,
    pub port: u16,
    peer: NodePeer,
}

impl BetterAuthPeer {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts it with extra environment, e.g. `("PEER_ANON_RATE_LIMIT", "2")`;
    /// `("PORT", "N")` picks the port (e.g. one a device already points at).
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        let port = env
            .iter()
            .find(|(k, _)| *k == "PORT")
            .map_or("0", |(_, v)| *v);
        let peer = NodePeer::start(
            "Better Auth peer",
            &peer_dir("better-auth"),
            "better-auth",
            port,
            env,
            // "production" would turn Better Auth's rate limiter on.
            // PEER_DATABASE_URL would put it on PostgreSQL (the benchmark's mode).
            &["NODE_ENV", "PORT", "PEER_DATABASE_URL"],
        );
        Self {
            base_url: format!("http://127.0.0.1:{}", peer.port),
            port: peer.port,
            peer,
        }
    }

    /// Kills the server now (the "server went away" case).
    pub fn kill(&mut self) {
        self.peer.kill();
    }

    /// What the server wrote to stderr so far (Better Auth's own log), for diagnostics.
    pub fn stderr(&mut self) -> String {
        self.peer.stderr()
    }
}
