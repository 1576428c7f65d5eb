/*
 * zdelta: the gateway's encoder and the device's decoder of compressed and
 * delta payloads (proto/zdelta.c, PROTOCOL.md 6.4) as a command, for the
 * benchmark (tests/bench/delta.sh) and by hand.
 *
 *   zdelta make [--level N] BASE|- TARGET OUT  (default: the gateway's)
 *       the payload of TARGET in 256 KiB frames, as the gateway makes it:
 *       a delta from BASE, or zstd ("-": no base).
 *       Prints: bytes=B cpu_ms=C
 *   zdelta apply BASE|- PAYLOAD SIZE OUT
 *       rebuild the SIZE-byte image from PAYLOAD, fed in 4 KiB pieces as
 *       fragments would bring it, BASE mapped read-only (not copied), each
 *       frame written to OUT as it is decoded (4 KiB blocks).
 *       Prints: cpu_ms=C rss_anon_peak_kib=A rss_file_peak_kib=F
 *       (the process's anonymous and file-backed resident memory, sampled
 *       after every frame: what the decoder holds, and the base's pages).
 * Exits 0, 1 with a reason on stderr, 2 on a bad command line.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proto/proto.h"

#define BS 4096u
#define PIECE 4096u

static const uint8_t *map_file(const char *path, size_t *len)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) != 0) {
		perror(path);
		exit(1);
	}
	*len = (size_t)st.st_size;
	void *m = *len ? mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
	close(fd);
	if (*len && m == MAP_FAILED) {
		perror(path);
		exit(1);
	}
	return m;
}

static long cpu_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 +
	       ru.ru_stime.tv_sec * 1000 + ru.ru_stime.tv_usec / 1000;
}

/* RssAnon and RssFile of this process, KiB. */
static void rss(long *anon, long *file)
{
	char line[256];
	FILE *f = fopen("/proc/self/status", "r");
	*anon = *file = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "RssAnon:", 8))
			*anon = strtol(line + 8, NULL, 10);
		else if (!strncmp(line, "RssFile:", 8))
			*file = strtol(line + 8, NULL, 10);
	}
	if (f)
		fclose(f);
}

static int make(int level, const char *base, const char *target,
		const char *out)
{
	size_t bl = 0, tl;
	const uint8_t *b = strcmp(base, "-") ? map_file(base, &bl) : NULL;
	const uint8_t *t = map_file(target, &tl);
	uint8_t *enc;
	size_t elen;
	struct proto_err err = {{0}};
	long c0 = cpu_ms();
	if (level < 0) /* what the gateway takes */
		level = proto_zenc_level(tl + bl);
	if (proto_zenc(t, tl, b, bl, BS, 256u << 10, level, &enc, &elen,
		       &err) != 0) {
		fprintf(stderr, "zdelta: %s\n", err.text);
		return 1;
	}
	long c1 = cpu_ms();
	FILE *f = fopen(out, "wb");
	if (!f || fwrite(enc, 1, elen, f) != elen || fclose(f) != 0) {
		perror(out);
		return 1;
	}
	printf("bytes=%zu cpu_ms=%ld\n", elen, c1 - c0);
	free(enc);
	return 0;
}

static int apply(const char *base, const char *payload, uint64_t size,
		 const char *out)
{
	size_t bl = 0, pl;
	const uint8_t *b = strcmp(base, "-") ? map_file(base, &bl) : NULL;
	int fd = open(payload, O_RDONLY);
	int ofd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	uint8_t piece[PIECE];
	struct proto_zdec *z;
	struct proto_err err = {{0}};
	long anon = 0, file = 0, amax = 0, fmax = 0, c0 = cpu_ms();
	(void)pl;
	if (fd < 0 || ofd < 0 ||
	    proto_zdec_new(b, bl, size, BS, 0, &z, &err) != 0) {
		fprintf(stderr, "zdelta: cannot start: %s\n", err.text);
		return 1;
	}
	ssize_t n;
	int rc = 0;
	while (rc >= 0 && (n = read(fd, piece, sizeof(piece))) > 0) {
		const uint8_t *p = piece;
		size_t left = (size_t)n, used;
		while ((rc = proto_zdec_push(z, p, left, &used, &err)) == 1) {
			uint64_t at;
			const uint8_t *d;
			size_t len;
			proto_zdec_frame(z, &at, &d, &len);
			if (pwrite(ofd, d, len, (off_t)at) != (ssize_t)len) {
				perror(out);
				return 1;
			}
			rss(&anon, &file);
			amax = anon > amax ? anon : amax;
			fmax = file > fmax ? file : fmax;
			p += used;
			left -= used;
		}
	}
	if (rc < 0 || proto_zdec_image_off(z) != size) {
		fprintf(stderr, "zdelta: %s\n",
			rc < 0 ? err.text : "payload ends before the image");
		return 1;
	}
	close(ofd);
	printf("cpu_ms=%ld rss_anon_peak_kib=%ld rss_file_peak_kib=%ld\n",
	       cpu_ms() - c0, amax, fmax);
	proto_zdec_free(z);
	return 0;
}

int main(int argc, char **argv)
{
	int level = -1, a = 1;
	if (argc > 3 && !strcmp(argv[1], "make") &&
	    !strcmp(argv[2], "--level")) {
		level = atoi(argv[3]); /* a benchmark's argument */
		argv[3] = argv[1];
		argv += 2;
		argc -= 2;
	}
	if (argc == 5 && !strcmp(argv[a], "make"))
		return make(level, argv[2], argv[3], argv[4]);
	if (argc == 6 && !strcmp(argv[a], "apply"))
		return apply(argv[2], argv[3], strtoull(argv[4], NULL, 10),
			     argv[5]);
	fprintf(stderr, "usage: zdelta make [--level N] BASE|- TARGET OUT\n"
			"       zdelta apply BASE|- PAYLOAD SIZE OUT\n");
	return 2;
}
