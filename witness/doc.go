// Package witness has the box's checkpoints cosigned by transparency-log
// witnesses, and checks that a checkpoint carries a quorum of cosignatures.
//
// A witness is an independent server (C2SP tlog-witness: omniwitness, or
// any other implementation) that cosigns a checkpoint of a log only if it is
// consistent with every checkpoint of that log it cosigned before. With
// witnesses run by others (a regulator, the developer's head office), the
// box's owner cannot rewrite the audit log, or show two auditors two
// histories, without a witness refusing.
//
// Client pushes a checkpoint to every configured witness (add-checkpoint,
// with the consistency proof from the size each witness last cosigned),
// verifies each cosignature (C2SP tlog-cosignature) with that witness's key,
// and returns the checkpoint with the cosignatures added and, for each
// witness, whether it cosigned or why not: an *Error whose kind says down,
// refused, fork or bad response. VerifyCosigned checks a cosigned checkpoint
// against the witness keys an auditor trusts.
//
// The package owns the client side of the protocol and what this process
// knows of each witness (the size it last cosigned); its caller may persist
// that. It never signs a checkpoint itself and never changes the log: it
// reads consistency proofs through Prover. Notes, proofs and cosignatures go
// through golang.org/x/mod/sumdb/note and transparency-dev's formats library;
// no cryptography is written here.
package witness
