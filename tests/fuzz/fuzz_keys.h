/*
 * fuzz_keys.h — fixed keys for the trust harnesses and their seeds
 * (tests/fuzz/mkseeds.c signs the seed documents with them, so a seed
 * carries a signature the harness can verify and mutations start from a
 * valid one).  Test keys only: generated for this purpose, published here,
 * never used for anything else.
 */
#ifndef WP_FUZZ_KEYS_H
#define WP_FUZZ_KEYS_H

#define FZ_ED25519_PRIV \
    "-----BEGIN PRIVATE KEY-----\n" \
    "MC4CAQAwBQYDK2VwBCIEICSXDAyTDsO67X3eHaGHN1behaEjWz6uRdJVl9+TprRK\n" \
    "-----END PRIVATE KEY-----\n"
#define FZ_ED25519_PUB \
    "-----BEGIN PUBLIC KEY-----\n" \
    "MCowBQYDK2VwAyEAVZs3dqQ36DvKom6rzr8zzA+e9YBNtVEbau/LRGO2WXw=\n" \
    "-----END PUBLIC KEY-----\n"
#define FZ_P256_PRIV \
    "-----BEGIN PRIVATE KEY-----\n" \
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgAncgcCtjSQ0tn1Oi\n" \
    "mK4+7VNNLhfgUuiHHYfRu//bt8GhRANCAATqSMRmDHBA3nkaBIDICi3X7z+wu5As\n" \
    "RzQ64Tmib8EEeT+BCZ5eMDBYeOK90en6dY7dhNrQ+8Uvqg5denxk7F0G\n" \
    "-----END PRIVATE KEY-----\n"
#define FZ_P256_PUB \
    "-----BEGIN PUBLIC KEY-----\n" \
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6kjEZgxwQN55GgSAyAot1+8/sLuQ\n" \
    "LEc0OuE5om/BBHk/gQmeXjAwWHjivdHp+nWO3YTa0PvFL6oOXXp8ZOxdBg==\n" \
    "-----END PUBLIC KEY-----\n"

/* The manifest bytes the signature seeds sign. */
#define FZ_MANIFEST "{\"format\":\"fuzz-manifest\",\"version\":1}"

/* The resources the in-toto seeds list (name, SHA-256 of the name itself). */
#define FZ_RESOURCES {"manifest.json", "model.wpk"}

#endif
