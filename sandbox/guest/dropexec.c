/* dropexec UID GID CWD PATH ARGV0 [ARG...]: become UID:GID entirely (real, effective and saved
 * ids), change to CWD and exec PATH with ARGV0 ARG..., in the environment it was given.
 *
 * The tool server starts the agent's commands through this tiny static program with
 * posix_spawn, which uses vfork: a child that changes its uid itself cannot be vforked from
 * Python, and forking the server costs about a millisecond per exec. The server's real and
 * saved uid are 0 and its effective uid is the agent's, so after exec this program's real uid
 * is 0 and its effective and saved uids are the agent's: setting all three to the agent's needs
 * no privilege, and leaving uid 0 behind clears every capability. See privs.py.
 *
 * Failures read like the server's own: "corral: ARGV0: <reason>" on stderr, exit 127 when PATH
 * is not found, 126 when it cannot be executed, 125 when the ids cannot be set. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 6) {
        fputs("usage: dropexec UID GID CWD PATH ARGV0 [ARG...]\n", stderr);
        return 125;
    }
    uid_t uid = (uid_t)strtoul(argv[1], NULL, 10);
    gid_t gid = (gid_t)strtoul(argv[2], NULL, 10);
    if (setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        fprintf(stderr, "corral: cannot become %s:%s: %s\n", argv[1], argv[2], strerror(errno));
        return 125;
    }
    if (getuid() != uid || geteuid() != uid || getgid() != gid) return 125;
    if (chdir(argv[3]) != 0) {
        fprintf(stderr, "corral: %s: %s\n", argv[3], strerror(errno));
        return 126;
    }
    execv(argv[4], argv + 5);
    int err = errno;
    fprintf(stderr, "corral: %s: %s\n", argv[5], strerror(err));
    return err == ENOENT ? 127 : 126;
}
