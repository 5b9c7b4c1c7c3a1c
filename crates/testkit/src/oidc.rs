//! A real OpenID Connect provider for the social upgrade tests:
//! `node tests/peers/oidc/server.mjs` (npm `oauth2-mock-server`) on a free loopback port.
//!
//! Ready when it prints its one line `{"port":N,"issuer":"http://127.0.0.1:N"}` (no
//! sleeps). The child is killed when the [`OidcPeer`] is dropped, and it also exits by
//! itself when its stdin closes. It auto-approves every authorization; whoever plays the
//! browser picks the account with `login_hint=<email>` on the authorize URL, makes the
//! provider refuse with `peer_error=<code>`, forges the audience with `peer_aud=<id>[,…]`,
//! sets `peer_azp`, signs under another algorithm than its key's with `peer_alg`, or
//! stretches the token's life with `peer_ttl`; `/peer/stats` counts discovery and JWKS
//! fetches, `/peer/announce-issuer` and `/peer/jwks-delay-ms` bend them (see the peer's
//! `server.mjs`).

use crate::node_peer::{peer_dir, NodePeer};

pub struct OidcPeer {
    /// `http://127.0.0.1:N`: discovery at `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub port: u16,
    peer: NodePeer,
}

impl OidcPeer {
    pub fn start() -> Self {
        let peer = NodePeer::start(
            "OpenID Connect peer",
            &peer_dir("oidc"),
            "oauth2-mock-server",
            "0",
            &[],
            &[],
        );
        let issuer = peer.ready["issuer"]
            .as_str()
            .map_or_else(|| format!("http://127.0.0.1:{}", peer.port), str::to_owned);
        Self {
            issuer,
            port: peer.port,
            peer,
        }
    }

    /// Kills the provider now and waits for it to be gone.
    pub fn kill(&mut self) {
        self.peer.kill();
    }

    /// What the provider wrote to stderr so far, for diagnostics.
    pub fn stderr(&mut self) -> String {
        self.peer.stderr()
    }
}
