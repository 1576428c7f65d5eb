#include "common/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

uint64_t util_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t util_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int util_path(char *out, size_t outlen, const char *dir, const char *name)
{
	int n = snprintf(out, outlen, "%s/%s", dir, name);
	return (n < 0 || (size_t)n >= outlen) ? -1 : 0;
}

int util_mkdirs(const char *path, mode_t mode, char *err, size_t errlen)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf)) {
		snprintf(err, errlen, "bad directory path '%s'", path);
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, mode) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", buf,
				 strerror(errno));
			return -1;
		}
		buf[i] = c;
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is not a directory", path);
		return -1;
	}
	return 0;
}

int util_fsync_dir_of(const char *path)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
		return -1;
	memcpy(buf, path, n + 1);
	int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = fsync(fd);
	close(fd);
	return rc;
}

int util_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t w = write(fd, p, len);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

int util_sha256_fd(int fd, uint8_t md[32], uint64_t *size, char *err,
		   size_t errlen)
{
	static const size_t bufsz = 1 << 16;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *buf = malloc(bufsz);
	int rc = -1;
	*size = 0;
	if (!ctx || !buf || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t r = read(fd, buf, bufsz);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(err, errlen, "read: %s", strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		EVP_DigestUpdate(ctx, buf, (size_t)r);
		*size += (uint64_t)r;
	}
	EVP_DigestFinal_ex(ctx, md, NULL);
	rc = 0;
out:
	free(buf);
	EVP_MD_CTX_free(ctx);
	return rc;
}

int util_write_atomic(const char *path, const void *buf, size_t len,
		      mode_t mode, char *err, size_t errlen)
{
	char tmp[4096];
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		snprintf(err, errlen, "path too long: %s", path);
		return -1;
	}
	/* A leftover from a crash is ours to replace; never follow a link. */
	unlink(tmp);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
		      mode);
	if (fd < 0) {
		snprintf(err, errlen, "create %s: %s", tmp, strerror(errno));
		return -1;
	}
	if (util_write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "write %s: %s", tmp, strerror(errno));
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "rename %s: %s", tmp, strerror(errno));
		unlink(tmp);
		return -1;
	}
	if (util_fsync_dir_of(path) != 0) {
		snprintf(err, errlen, "fsync dir of %s: %s", path,
			 strerror(errno));
		return -1;
	}
	return 0;
}

int util_read_file(const char *path, size_t max, char **out, size_t *len,
		   char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		snprintf(err, errlen, "open %s: %s", path, strerror(errno));
		return -1;
	}
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		goto fail_fd;
	}
	if ((uint64_t)st.st_size > max) {
		snprintf(err, errlen, "%s: %lld bytes, more than %zu allowed",
			 path, (long long)st.st_size, max);
		goto fail_fd;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		snprintf(err, errlen, "out of memory reading %s", path);
		goto fail_fd;
	}
	size_t got = 0;
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			snprintf(err, errlen, "read %s: %s", path,
				 r < 0 ? strerror(errno) : "short read");
			free(buf);
			goto fail_fd;
		}
		got += (size_t)r;
	}
	buf[got] = '\0';
	close(fd);
	*out = buf;
	*len = got;
	return 0;
fail_fd:
	close(fd);
	return -1;
}

int util_key_private(const char *what, const char *path, char *err,
		     size_t errlen)
{
	struct stat st;
	if (stat(path, &st) != 0) {
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
		return -1;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
			 "%s %s is accessible by group or others (mode %04o): "
			 "run chmod 600 %s",
			 what, path, (unsigned)(st.st_mode & 07777), path);
		return -1;
	}
	return 0;
}

int util_key_dir_private(const char *what, const char *dir, char *err,
			 size_t errlen)
{
	char path[PATH_MAX];
	int rc = 0;
	DIR *d = opendir(dir);
	if (!d) {
		snprintf(err, errlen, "%s %s: %s", what, dir, strerror(errno));
		return -1;
	}
	struct dirent *e;
	while (rc == 0 && (e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (n < 5 || strcmp(e->d_name + n - 4, ".key") != 0)
			continue;
		if (util_path(path, sizeof(path), dir, e->d_name) != 0) {
			snprintf(err, errlen, "%s %s: path too long", what,
				 dir);
			rc = -1;
		} else {
			rc = util_key_private(what, path, err, errlen);
		}
	}
	closedir(d);
	return rc;
}

int util_load_pubkey(const char *path, uint8_t pub[32], char *err,
		     size_t errlen)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "open public key %s: %s", path,
			 strerror(errno));
		return -1;
	}
	EVP_PKEY *k = PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	size_t n = 32;
	if (!k || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519 ||
	    EVP_PKEY_get_raw_public_key(k, pub, &n) != 1 || n != 32) {
		snprintf(err, errlen, "%s: not an Ed25519 public key (PEM)",
			 path);
		EVP_PKEY_free(k);
		return -1;
	}
	EVP_PKEY_free(k);
	return 0;
}

int util_load_privkey(const char *path, uint8_t priv[32], char *err,
		      size_t errlen)
{
	if (util_key_private("private key", path, err, errlen) != 0)
		return -1;
	FILE *f = fopen(path, "r");
	if (!f) {
		snprintf(err, errlen, "open private key %s: %s", path,
			 strerror(errno));
		return -1;
	}
	EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	size_t n = 32;
	if (!k || EVP_PKEY_get_id(k) != EVP_PKEY_ED25519 ||
	    EVP_PKEY_get_raw_private_key(k, priv, &n) != 1 || n != 32) {
		snprintf(err, errlen, "%s: not an Ed25519 private key (PEM)",
			 path);
		EVP_PKEY_free(k);
		return -1;
	}
	EVP_PKEY_free(k);
	return 0;
}

int util_pubkey_of(const uint8_t priv[32], uint8_t pub[32])
{
	EVP_PKEY *k =
	    EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, priv, 32);
	size_t n = 32;
	int rc = k && EVP_PKEY_get_raw_public_key(k, pub, &n) == 1 && n == 32
		     ? 0
		     : -1;
	EVP_PKEY_free(k);
	return rc;
}

int util_keygen(const char *priv_path, const char *pub_path, char *err,
		size_t errlen)
{
	int rc = -1;
	EVP_PKEY *k = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
	if (!ctx || EVP_PKEY_keygen_init(ctx) != 1 ||
	    EVP_PKEY_keygen(ctx, &k) != 1) {
		snprintf(err, errlen, "Ed25519 key generation failed");
		goto out_ctx;
	}
	int fd = open(priv_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "create %s: %s%s", priv_path,
			 strerror(errno),
			 errno == EEXIST ? " (refusing to overwrite a key)"
					 : "");
		goto out_key;
	}
	FILE *f = fdopen(fd, "w");
	if (!f || PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1 ||
	    fflush(f) != 0 || fsync(fd) != 0) {
		snprintf(err, errlen, "write %s failed", priv_path);
		if (f)
			fclose(f);
		else
			close(fd);
		unlink(priv_path);
		goto out_key;
	}
	fclose(f);
	f = fopen(pub_path, "w");
	if (!f || PEM_write_PUBKEY(f, k) != 1 || fclose(f) != 0) {
		snprintf(err, errlen, "write %s: %s", pub_path,
			 strerror(errno));
		goto out_key;
	}
	rc = 0;
out_key:
	EVP_PKEY_free(k);
out_ctx:
	EVP_PKEY_CTX_free(ctx);
	return rc;
}
