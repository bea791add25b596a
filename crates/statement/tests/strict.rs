//! One acceptance rule for signatures, strict RFC 8032 verification, whether an envelope is
//! opened alone (`open`), with many (`open_many`), or checked in a sequencer's batch
//! (`check_signatures`): crafted signatures that the cofactored batch equation accepts and
//! strict verification refuses are refused by all three.

#![allow(clippy::unwrap_used)] // test code: a panic is a failing test

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use nospy_statement::predicate::{Predicate, Revocation};
use nospy_statement::{
    check_named_signatures, dsse::Envelope, open, open_many, parse_unverified, sign, DigestSet,
    ResourceDescriptor,
};
use nospy_tlog::note::{SignerKey, VerifierKey, ALG_ED25519};
use nospy_tlog::Sha256;

fn revocation(i: u8, key: &SignerKey) -> Envelope {
    sign(
        vec![ResourceDescriptor {
            digest: Some(DigestSet::sha256(&Sha256([i; 32]))),
            ..Default::default()
        }],
        &Predicate::Revocation(Revocation {
            reason: format!("test {i}"),
            effective: "2026-01-01T00:00:00Z".into(),
        }),
        &[key],
    )
}

/// A signature by the key of `seed` whose R has a point of order 8 added, made with the secret
/// scalar so that s answers the challenge of that R: the strict equation sees R - [s]B + [k]A =
/// the torsion point and refuses; a batch whose random coefficient for it is a multiple of 8
/// cannot see it.
fn with_torsion_in_r(mut env: Envelope, seed: [u8; 32], nonce: u8) -> Vec<u8> {
    use curve25519_dalek::scalar::{clamp_integer, Scalar};
    use sha2::{Digest, Sha512};
    let h = Sha512::digest(seed);
    let a = Scalar::from_bytes_mod_order(clamp_integer(h[..32].try_into().unwrap()));
    let big_a = ED25519_BASEPOINT_POINT * a;
    let r = Scalar::from_bytes_mod_order_wide(&Sha512::digest([nonce; 7]).into());
    let big_r = ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[1];
    let pae = nospy_statement::dsse::pae(&env.payload_type, &env.payload);
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(big_r.compress().as_bytes())
            .chain_update(big_a.compress().as_bytes())
            .chain_update(&pae)
            .finalize()
            .into(),
    );
    let s = r + k * a;
    let sig = &mut env.signatures[0].sig;
    sig[..32].copy_from_slice(big_r.compress().as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    env.to_json()
}

/// A "key" of small order (the identity) and a signature that the cofactored equation accepts
/// for any message: R = [s]B with s = 1.
fn weak_key_signature(honest: &Envelope) -> (VerifierKey, Vec<u8>) {
    let identity = curve25519_dalek::edwards::EdwardsPoint::default().compress();
    let vk = ed25519_dalek::VerifyingKey::from_bytes(identity.as_bytes()).unwrap();
    let key = VerifierKey::from_ed25519("weak.example", ALG_ED25519, &vk).unwrap();
    let mut env = honest.clone();
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(ED25519_BASEPOINT_POINT.compress().as_bytes());
    sig[32] = 1;
    env.signatures = vec![nospy_statement::dsse::Signature {
        keyid: Some(key.to_string()),
        sig: sig.to_vec(),
    }];
    (key, env.to_json())
}

/// Whether one Ed25519 batch verification (ed25519-dalek's) of every signature of `envelopes`
/// by `key` passes.
fn batch_accepts(envelopes: &[&[u8]], key: &VerifierKey) -> bool {
    let (mut msgs, mut sigs, mut vks) = (Vec::new(), Vec::new(), Vec::new());
    for e in envelopes {
        let env = Envelope::parse(e).unwrap();
        let sig: [u8; 64] = env.signatures[0].sig.clone().try_into().unwrap();
        msgs.push(nospy_statement::dsse::pae(&env.payload_type, &env.payload));
        sigs.push(ed25519_dalek::Signature::from_bytes(&sig));
        vks.push(*key.ed25519().unwrap());
    }
    let msgs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    ed25519_dalek::verify_batch(&msgs, &sigs, &vks).is_ok()
}

#[test]
fn strict_verification_torsion_in_r_is_refused_alone_and_in_batches() {
    let key = SignerKey::from_seed("vendor.example", [5; 32]).unwrap();
    let keys = [key.verifier()];
    let honest: Vec<Vec<u8>> = (0..3).map(|i| revocation(i, &key).to_json()).collect();
    // The batch's random coefficients come from its inputs; one of them is a multiple of 8 for
    // about one input in 8, and then the batch cannot see R's torsion: ground here as an
    // attacker would, until the batch alone accepts the crafted signature.
    let crafted = (10..200)
        .map(|i| with_torsion_in_r(revocation(i, &key), [5; 32], i))
        .find(|c| {
            let mut all: Vec<&[u8]> = honest.iter().map(|e| e.as_slice()).collect();
            all.insert(1, c);
            batch_accepts(&all, &keys[0])
        })
        .expect("a crafted signature the batch equation accepts");
    assert!(open(&crafted, &keys).is_err(), "strict refuses it alone");

    // In a batch with honest envelopes, the answers are open's, one by one.
    let mut all: Vec<&[u8]> = honest.iter().map(|e| e.as_slice()).collect();
    all.insert(1, &crafted);
    let opened = open_many(&all, &keys);
    let got: Vec<bool> = opened.iter().map(|r| r.is_ok()).collect();
    let want: Vec<bool> = all.iter().map(|e| open(e, &keys).is_ok()).collect();
    assert_eq!(got, want);
    assert_eq!(got, [true, false, true, true]);

    // And in a sequencer's batch check.
    let parsed: Vec<_> = all
        .iter()
        .map(|e| parse_unverified(e, |id| VerifierKey::parse(id).ok()).unwrap())
        .collect();
    let checked = check_named_signatures(&parsed.iter().collect::<Vec<_>>());
    assert_eq!(checked, [true, false, true, true]);
}

#[test]
fn strict_verification_small_order_key_is_refused_alone_and_in_batches() {
    let key = SignerKey::from_seed("vendor.example", [5; 32]).unwrap();
    let honest = revocation(1, &key);
    let (weak, crafted) = weak_key_signature(&honest);
    let keys = [key.verifier(), weak.clone()];
    assert!(open(&crafted, &keys).is_err(), "strict refuses it alone");
    // The batch equation alone would take it: that is what the rule must not follow.
    let sig: [u8; 64] = Envelope::parse(&crafted).unwrap().signatures[0]
        .sig
        .clone()
        .try_into()
        .unwrap();
    let pae = {
        let e = Envelope::parse(&crafted).unwrap();
        nospy_statement::dsse::pae(&e.payload_type, &e.payload)
    };
    let honest_json = honest.to_json();
    let honest_env = Envelope::parse(&honest_json).unwrap();
    let honest_pae = nospy_statement::dsse::pae(&honest_env.payload_type, &honest_env.payload);
    let honest_sig: [u8; 64] = honest_env.signatures[0].sig.clone().try_into().unwrap();
    assert!(ed25519_dalek::verify_batch(
        &[pae.as_slice(), honest_pae.as_slice()],
        &[
            ed25519_dalek::Signature::from_bytes(&sig),
            ed25519_dalek::Signature::from_bytes(&honest_sig)
        ],
        &[*weak.ed25519().unwrap(), *key.verifier().ed25519().unwrap()],
    )
    .is_ok());

    let all: Vec<&[u8]> = vec![&honest_json, &crafted];
    let got: Vec<bool> = open_many(&all, &keys).iter().map(|r| r.is_ok()).collect();
    assert_eq!(got, [true, false]);
    let parsed: Vec<_> = all
        .iter()
        .map(|e| parse_unverified(e, |id| VerifierKey::parse(id).ok()).unwrap())
        .collect();
    let checked = check_named_signatures(&parsed.iter().collect::<Vec<_>>());
    assert_eq!(checked, [true, false]);
}
