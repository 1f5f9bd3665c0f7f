// Package security holds the attacks of issue 11 as tests against real
// imnode processes started WITH cluster credentials (a CA and node
// certificates issued by node/pki, a gossip keyring, an admin token): an
// impostor without the key or a certificate cannot join gossip, complete a
// transport handshake, or read, write or delete anything; a node with a valid
// certificate cannot act under another node's id; a removed node's
// certificate is refused; a forged "left" gossip message changes nothing;
// admin calls without the token get 401 and backups stay below the backup
// dir. The rotation tests change the gossip keyring and the peer
// certificates (a new CA) under load and check the ledger of acknowledged
// messages: none may be lost.
//
// Every test here was checked to fail with its protection removed (see the
// commit messages).
package security
