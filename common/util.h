/*
 * util: small file-system, time and key helpers shared by the programs.
 * Functions return 0 or -1 and put a reason into err (errlen bytes).
 */
#ifndef OTA_UTIL_H
#define OTA_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Monotonic milliseconds (for intervals) and wall-clock unix ms. */
uint64_t util_mono_ms(void);
int64_t util_wall_ms(void);

/* mkdir -p with `mode` for the directories it creates. */
int util_mkdirs(const char *path, mode_t mode, char *err, size_t errlen);

/* Write `path` atomically: temp file in the same directory, fsync, rename,
 * fsync the directory. A crash leaves either the old or the new content. */
int util_write_atomic(const char *path, const void *buf, size_t len,
		      mode_t mode, char *err, size_t errlen);

/* Read a whole file of at most `max` bytes into a new NUL-terminated
 * buffer (*out, caller frees). */
int util_read_file(const char *path, size_t max, char **out, size_t *len,
		   char *err, size_t errlen);

/* write() all of buf, retrying on EINTR and short writes; 0 or -1 (errno). */
int util_write_all(int fd, const void *buf, size_t len);

/* SHA-256 and length of what fd holds from its current offset to the end,
 * read in 64 KiB pieces (memory stays flat whatever the size). */
int util_sha256_fd(int fd, uint8_t md[32], uint64_t *size, char *err,
		   size_t errlen);

/* fsync the directory holding `path`. */
int util_fsync_dir_of(const char *path);

/* A private key must be accessible by its owner only. 0 if `path` has no
 * group or other permission bits; otherwise -1 with err = "<what> <path> is
 * accessible by group or others (mode 0644): run chmod 600 <path>" (what:
 * the configuration key or "private key"), or why it could not be checked. */
int util_key_private(const char *what, const char *path, char *err,
		     size_t errlen);
/* The same for every "*.key" file in directory `dir` (fleet mode). */
int util_key_dir_private(const char *what, const char *dir, char *err,
			 size_t errlen);

/* Ed25519 keys as PEM files (PKCS#8 private, SubjectPublicKeyInfo public).
 * Loading a private key refuses a file readable by group or others. */
int util_load_pubkey(const char *path, uint8_t pub[32], char *err,
		     size_t errlen);
int util_load_privkey(const char *path, uint8_t priv[32], char *err,
		      size_t errlen);
/* The Ed25519 public key of a private one (seed). 0 or -1. */
int util_pubkey_of(const uint8_t priv[32], uint8_t pub[32]);
/* Make a new key pair; the private key is written with mode 0600 and is
 * never overwritten. */
int util_keygen(const char *priv_path, const char *pub_path, char *err,
		size_t errlen);

/* Join dir and name into out (outlen); -1 when it does not fit. */
int util_path(char *out, size_t outlen, const char *dir, const char *name);

#endif
