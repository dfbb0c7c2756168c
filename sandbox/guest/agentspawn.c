/* _agentspawn: start one of the agent's commands as the agent, with vfork, in one exec.
 *
 * spawn(path, argv, envp, cwd, uid, gid, stdin_fd, stdout_fd, stderr_fd) -> pid
 *
 * The tool server's real and saved uid are 0 (privs.py), so each child must set all its ids to
 * the agent's before it execs. CPython forks rather than vforks a child that changes ids, and
 * glibc's posix_spawn cannot change them, which is why `dropexec` exists: posix_spawn of a
 * static helper that drops and execs again. Its second exec costs about 0.4 ms per command on
 * our machines; doing the same few system calls here in a vfork child costs none. This is
 * exactly what glibc's posix_spawn does (block signals, reset handlers in the child, restore the
 * mask), plus setresgid/setresuid/chdir.
 *
 * The child only makes system calls on its own stack and on memory the parent prepared; a
 * failure is reported through a close-on-exec pipe as (stage, errno) and the child exits 127.
 * Built against the stable ABI (3.11+) when the guest is staged, if the host can; spawn.py falls
 * back to `dropexec` otherwise. */
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

enum { STAGE_FDS = 1, STAGE_IDS = 2, STAGE_CWD = 3, STAGE_EXEC = 4 };

static void free_list(char **list) {
    if (list == NULL) return;
    for (char **p = list; *p != NULL; p++) free(*p);
    free(list);
}

/* A NULL-terminated copy of a list of str/bytes (os.fsencode'd by the caller: bytes only). */
static char **to_cstrings(PyObject *seq, const char *what) {
    Py_ssize_t n = PyList_Size(seq);
    if (n < 0) return NULL;
    char **out = calloc((size_t)n + 1, sizeof(char *));
    if (out == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyList_GetItem(seq, i); /* borrowed */
        char *data;
        Py_ssize_t len;
        if (item == NULL || !PyBytes_Check(item) || PyBytes_AsStringAndSize(item, &data, &len) < 0) {
            if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s must be a list of bytes", what);
            free_list(out);
            return NULL;
        }
        if ((Py_ssize_t)strlen(data) != len) {
            PyErr_Format(PyExc_ValueError, "%s: embedded NUL byte", what);
            free_list(out);
            return NULL;
        }
        out[i] = strdup(data);
        if (out[i] == NULL) {
            PyErr_NoMemory();
            free_list(out);
            return NULL;
        }
    }
    return out;
}

struct child_args {
    const char *path, *cwd;
    char **argv, **envp;
    uid_t uid;
    gid_t gid;
    int fds[3], err_w;
    sigset_t *old_mask;
};

static void report(int fd, int stage) {
    int msg[2] = {stage, errno};
    (void)!write(fd, msg, sizeof msg);
    _exit(127);
}

/* Runs in the vfork child: system calls only. */
static void child(const struct child_args *a) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    /* Handlers live in the parent's memory, which this child shares until it execs: reset them,
     * and what Python ignores (SIGPIPE, SIGXFSZ) as Popen's restore_signals does. */
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction cur;
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        if (sigaction(sig, NULL, &cur) != 0) continue;
        if (cur.sa_handler != SIG_DFL && (cur.sa_handler != SIG_IGN || sig == SIGPIPE || sig == SIGXFSZ))
            sigaction(sig, &dfl, NULL);
    }
    sigprocmask(SIG_SETMASK, a->old_mask, NULL);
    if (setsid() < 0) report(a->err_w, STAGE_FDS);
    for (int target = 0; target < 3; target++) {
        int fd = a->fds[target];
        if (fd < 0) {
            fd = open("/dev/null", target == 0 ? O_RDONLY | O_CLOEXEC : O_WRONLY | O_CLOEXEC);
            if (fd < 0) report(a->err_w, STAGE_FDS);
        }
        if (fd == target) {
            int flags = fcntl(fd, F_GETFD);
            if (flags < 0 || fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) report(a->err_w, STAGE_FDS);
        } else if (dup2(fd, target) < 0) {
            report(a->err_w, STAGE_FDS);
        }
    }
    /* The server dropped its supplementary groups when it became the agent (privs.py). */
    if (getgroups(0, NULL) != 0) {
        errno = EPERM;
        report(a->err_w, STAGE_IDS);
    }
    if (setresgid(a->gid, a->gid, a->gid) != 0 || setresuid(a->uid, a->uid, a->uid) != 0)
        report(a->err_w, STAGE_IDS);
    if (getuid() != a->uid || geteuid() != a->uid || getgid() != a->gid) {
        errno = EPERM;
        report(a->err_w, STAGE_IDS);
    }
    if (chdir(a->cwd) != 0) report(a->err_w, STAGE_CWD);
    execve(a->path, a->argv, a->envp);
    report(a->err_w, STAGE_EXEC);
}

static PyObject *spawn(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *path_obj, *argv_obj, *envp_obj, *cwd_obj;
    unsigned int uid, gid;
    int fd0, fd1, fd2;
    if (!PyArg_ParseTuple(args, "O!O!O!O!IIiii", &PyBytes_Type, &path_obj, &PyList_Type, &argv_obj,
                          &PyList_Type, &envp_obj, &PyBytes_Type, &cwd_obj, &uid, &gid, &fd0, &fd1,
                          &fd2))
        return NULL;
    if (uid == 0 || gid == 0) {
        PyErr_SetString(PyExc_ValueError, "the agent's uid and gid are never 0");
        return NULL;
    }
    struct child_args a = {.uid = uid, .gid = gid, .fds = {fd0, fd1, fd2}};
    a.path = PyBytes_AsString(path_obj);
    a.cwd = PyBytes_AsString(cwd_obj);
    if (a.path == NULL || a.cwd == NULL) return NULL;
    a.argv = to_cstrings(argv_obj, "argv");
    if (a.argv == NULL) return NULL;
    a.envp = to_cstrings(envp_obj, "envp");
    if (a.envp == NULL) {
        free_list(a.argv);
        return NULL;
    }
    int err_pipe[2];
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
        free_list(a.argv);
        free_list(a.envp);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    for (int i = 0; i < 2; i++) { /* keep the error pipe clear of the fds the child dup2s onto */
        if (err_pipe[i] <= 2) {
            int moved = fcntl(err_pipe[i], F_DUPFD_CLOEXEC, 3);
            if (moved < 0) {
                close(err_pipe[0]);
                close(err_pipe[1]);
                free_list(a.argv);
                free_list(a.envp);
                return PyErr_SetFromErrno(PyExc_OSError);
            }
            close(err_pipe[i]);
            err_pipe[i] = moved;
        }
    }
    a.err_w = err_pipe[1];
    sigset_t all, old;
    sigfillset(&all);
    a.old_mask = &old;
    pid_t pid;
    int saved_errno = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = vfork();
    if (pid == 0) child(&a); /* never returns */
    saved_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    Py_END_ALLOW_THREADS
    close(err_pipe[1]);
    free_list(a.argv);
    free_list(a.envp);
    if (pid < 0) {
        close(err_pipe[0]);
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    /* vfork returned: the child has exec'd (the pipe closed on exec: EOF) or failed. */
    int msg[2];
    ssize_t got;
    do {
        got = read(err_pipe[0], msg, sizeof msg);
    } while (got < 0 && errno == EINTR);
    close(err_pipe[0]);
    if (got == (ssize_t)sizeof msg) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        errno = msg[1];
        if (msg[0] == STAGE_EXEC || msg[0] == STAGE_CWD) return PyErr_SetFromErrno(PyExc_OSError);
        PyErr_Format(PyExc_PermissionError, "cannot start the command as %u:%u (stage %d): %s", uid,
                     gid, msg[0], strerror(msg[1]));
        return NULL;
    }
    return PyLong_FromLong((long)pid);
}

static PyMethodDef methods[] = {
    {"spawn", spawn, METH_VARARGS,
     "spawn(path, argv, envp, cwd, uid, gid, stdin_fd, stdout_fd, stderr_fd) -> pid"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_agentspawn", NULL, -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__agentspawn(void) { return PyModule_Create(&module); }
