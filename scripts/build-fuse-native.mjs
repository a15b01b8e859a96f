#!/usr/bin/env node
// Rebuilds fuse-native 2.2.6's addon with two fixes to its utimens glue (run by
// `npm ci`/`npm install` as this package's postinstall):
//  1. it passes the access time twice, so every utimens set mtime = atime
//     (cp -a, tar, rsync -a all stored wrong mtimes; upstream issue open);
//  2. UTIME_NOW / UTIME_OMIT arrive as garbage milliseconds: NOW becomes the
//     current time, OMIT becomes 2^64-1, which the JS side treats as "unchanged".
//  3. libfuse2 drops a SETATTR that sets only one of atime/mtime (touch -m)
//     unless the fs sets flag_utime_omit_ok;
//  4. the caller's uid/gid/pid (fuse_get_context) are exposed to JS, so new
//     files belong to the user who created them, not to the mount process.
//  5. FUSE INTERRUPT reaches JS: each request gets a sequence number (in the
//     context), and an interrupt of a request still being handled calls the
//     Fuse object's onInterrupt(seq). The kernel waits for the answer of a
//     request it has sent even after SIGKILL; without this a handler that
//     waits (MAX_BACKLOG_SIZE) left the caller unkillable.
//  6. the state of a libfuse thread that ended is reused by the next new
//     thread instead of leaked (see the fourth patch set below);
//  7. metadata requests and reads reach JS ahead of other requests in
//     flight (the fifth patch set);
//  8. attributes a readdir listed, or a handler handed over after a change,
//     answer the LOOKUPs and GETATTRs that follow on the libfuse thread,
//     without a round trip through JS, and so do lookups of names absent
//     from a directory known whole, and the flush of a file with nothing
//     queued and no error to report (the sixth).
// If the build fails the prebuilt addon stays in use and this says so loudly:
// the filesystem works, but explicit mtimes are not kept and new files are root's.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
let dir;
try {
  dir = dirname(require.resolve('fuse-native/package.json'));
} catch {
  console.error('build-fuse-native: fuse-native is not installed; nothing to do');
  process.exit(0);
}
const src = join(dir, 'fuse-native.c');
const MARK = '/* lessfs-ts: utimens fixed */';
let c = readFileSync(src, 'utf8');
if (!c.includes(MARK)) {
  const helper = `${MARK}
static uint64_t lessfs_utimens_ms (const struct timespec* ts) {
  if (ts->tv_nsec == UTIME_OMIT) return UINT64_MAX;
  if (ts->tv_nsec == UTIME_NOW) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return timespec_to_uint64(&now);
  }
  return timespec_to_uint64(ts);
}
`;
  const replacements = [
    ['static void populate_stat (uint32_t *ints, struct stat* stat) {', `${helper}\nstatic void populate_stat (uint32_t *ints, struct stat* stat) {`],
    ['  l->atime = timespec_to_uint64(&tv[0]);\n  l->mtime = timespec_to_uint64(&tv[1]);', '  l->atime = lessfs_utimens_ms(&tv[0]);\n  l->mtime = lessfs_utimens_ms(&tv[1]);'],
    ['  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->atime, 5)', '  FUSE_UINT64_TO_INTS_ARGV(l->atime, 3)\n  FUSE_UINT64_TO_INTS_ARGV(l->mtime, 5)'],
  ];
  for (const [from, to] of replacements) {
    if (!c.includes(from)) {
      console.error(`build-fuse-native: WARNING: fuse-native.c does not look like 2.2.6 (missing: ${from.split('\n')[0]}); keeping the prebuilt addon, explicit mtimes will not be kept`);
      process.exit(0);
    }
    c = c.replace(from, to);
  }
  writeFileSync(src, c);
}
// Second patch set: caller context and flag_utime_omit_ok (C and index.js).
const MARK2 = '/* lessfs-ts: caller context */';
const getContext = `${MARK2}
NAPI_METHOD(fuse_native_get_context) {
  NAPI_ARGV(1)
  NAPI_ARGV_BUFFER_CAST(fuse_thread_locals_t *, l, 0);
  napi_value arr;
  napi_value v;
  napi_create_array_with_length(env, 3, &arr);
  napi_create_uint32(env, l->caller_uid, &v);
  napi_set_element(env, arr, 0, v);
  napi_create_uint32(env, l->caller_gid, &v);
  napi_set_element(env, arr, 1, v);
  napi_create_uint32(env, l->caller_pid, &v);
  napi_set_element(env, arr, 2, v);
  return arr;
}
`;
const cReplacements = [
  // libfuse2 calls utimens for a SETATTR that sets only atime or only mtime
  // (touch -m, utimensat with UTIME_OMIT) only when the fs says it understands
  // UTIME_OMIT/UTIME_NOW; otherwise it drops that change and answers success.
  ['  struct fuse_operations ops = { };', '  struct fuse_operations ops = { };\n  ops.flag_utime_omit_ok = 1;'],
  ['  int32_t res;\n\n  // Extended attributes', '  int32_t res;\n  uint32_t caller_uid;\n  uint32_t caller_gid;\n  uint32_t caller_pid;\n\n  // Extended attributes'],
  ['  fuse_thread_locals_t *l = get_thread_locals();\\\n  l->op = op_##name;\\',
   '  fuse_thread_locals_t *l = get_thread_locals();\\\n  {\\\n    struct fuse_context *caller_ctx = fuse_get_context();\\\n    l->caller_uid = caller_ctx->uid;\\\n    l->caller_gid = caller_ctx->gid;\\\n    l->caller_pid = caller_ctx->pid;\\\n  }\\\n  l->op = op_##name;\\'],
  ['NAPI_INIT() {', `${getContext}\nNAPI_INIT() {`],
  ['  NAPI_EXPORT_FUNCTION(fuse_native_mount)', '  NAPI_EXPORT_FUNCTION(fuse_native_mount)\n  NAPI_EXPORT_FUNCTION(fuse_native_get_context)'],
];
const jsReplacements = [
  ['        const funcName = `_op_${name}`\n',
   '        const funcName = `_op_${name}`\n        // lessfs-ts: caller of this request; valid synchronously inside the handler\n        const c = binding.fuse_native_get_context ? binding.fuse_native_get_context(nativeHandler) : undefined\n        self.context = c ? { uid: c[0], gid: c[1], pid: c[2] } : undefined\n'],
];
function patchFile(file, mark, reps) {
  let text = readFileSync(file, 'utf8');
  if (text.includes(mark)) return;
  for (const [from, to] of reps) {
    if (!text.includes(from)) {
      console.error(`build-fuse-native: WARNING: ${file} does not look like fuse-native 2.2.6 (missing: ${from.split('\n')[0]}); keeping it unpatched`);
      process.exit(0);
    }
    text = text.replace(from, to);
  }
  writeFileSync(file, text);
}
patchFile(src, MARK2, cReplacements);
patchFile(join(dir, 'index.js'), 'lessfs-ts: caller of this request', jsReplacements);

// Third patch set: interrupts. libfuse2's high-level API has no interrupt hook
// without -o intr (which signals the handling thread: SIGUSR1 is Node's
// inspector signal). The low-level one has: fuse_req_interrupt_func on the
// request, which the high-level context holds right after its public part
// (struct fuse_context_i in libfuse 2.9's fuse.c). The callback runs on the
// libfuse thread that read the INTERRUPT; it only records and wakes the JS
// loop. Unregistering before the answer waits for a running callback (the
// request's lock), so a callback never sees the next request of the thread.
const MARK3 = '/* lessfs-ts: interrupts */';
const intrHelpers = `${MARK3}
struct lessfs_fuse_context_i { struct fuse_context ctx; fuse_req_t req; };
static uint32_t lessfs_next_seq = 0;
static fuse_req_t lessfs_current_req (void) {
  return ((struct lessfs_fuse_context_i *) fuse_get_context())->req;
}
static void lessfs_interrupted (fuse_req_t req, void *data) {
  fuse_thread_locals_t *l = (fuse_thread_locals_t *) data;
  l->intr_seq = l->seq;
  __atomic_store_n(&(l->interrupted), 1, __ATOMIC_SEQ_CST);
  uv_async_send(&(l->intr_async));
}
static void lessfs_dispatch_interrupt (uv_async_t* handle) {
  fuse_thread_locals_t *l = (fuse_thread_locals_t *) handle->data;
  fuse_thread_t *ft = l->fuse;
  if (ft->handlers[34] == NULL) return;
  FUSE_NATIVE_CALLBACK(ft->handlers[34], {
    napi_value argv[2];
    napi_get_reference_value(env, l->self, &(argv[0]));
    napi_create_uint32(env, l->intr_seq, &(argv[1]));
    NAPI_MAKE_CALLBACK(env, NULL, ctx, callback, 2, argv, NULL)
  })
}
`;
const intrC = [
  ['  uint32_t caller_pid;\n\n  // Extended attributes', '  uint32_t caller_pid;\n  uint32_t seq;\n  uint32_t intr_seq;\n  int interrupted;\n  uv_async_t intr_async;\n\n  // Extended attributes'],
  ['static void populate_stat (uint32_t *ints, struct stat* stat) {', `${intrHelpers}\nstatic void populate_stat (uint32_t *ints, struct stat* stat) {`],
  ['  blk\\\n  uv_async_send(&(l->async));\\\n  uv_sem_wait(&(l->sem));\\\n  return l->res;',
   '  blk\\\n  fuse_req_t lessfs_req = lessfs_current_req();\\\n  l->seq = __atomic_add_fetch(&lessfs_next_seq, 1, __ATOMIC_RELAXED);\\\n  __atomic_store_n(&(l->interrupted), 0, __ATOMIC_SEQ_CST);\\\n  if (lessfs_req != NULL) fuse_req_interrupt_func(lessfs_req, lessfs_interrupted, l);\\\n  uv_async_send(&(l->async));\\\n  uv_sem_wait(&(l->sem));\\\n  if (lessfs_req != NULL) fuse_req_interrupt_func(lessfs_req, NULL, NULL);\\\n  return l->res;'],
  ['  uv_unref((uv_handle_t *) &(l->async));\n',
   '  uv_unref((uv_handle_t *) &(l->async));\n  err = uv_async_init(uv_default_loop(), &(l->intr_async), (uv_async_cb) lessfs_dispatch_interrupt);\n  assert(err >= 0);\n  uv_unref((uv_handle_t *) &(l->intr_async));\n  l->intr_async.data = l;\n'],
  ['  napi_create_array_with_length(env, 3, &arr);', '  napi_create_array_with_length(env, 5, &arr);'],
  ['  napi_set_element(env, arr, 2, v);\n  return arr;',
   '  napi_set_element(env, arr, 2, v);\n  napi_create_uint32(env, l->seq, &v);\n  napi_set_element(env, arr, 3, v);\n  napi_create_uint32(env, __atomic_load_n(&(l->interrupted), __ATOMIC_SEQ_CST) ? 1 : 0, &v);\n  napi_set_element(env, arr, 4, v);\n  return arr;'],
];
const intrJs = [
  ['        self.context = c ? { uid: c[0], gid: c[1], pid: c[2] } : undefined\n',
   '        self.context = c ? { uid: c[0], gid: c[1], pid: c[2], seq: c[3], interrupted: c[4] === 1 } : undefined\n'],
  ['    return handlers\n\n    function makeHandler',
   '    // lessfs-ts: interrupts: FUSE INTERRUPT of request seq (still being handled)\n    handlers[34] = function (nativeHandler, seq) {\n      if (typeof self.onInterrupt === \'function\') self.onInterrupt(seq)\n    }\n\n    return handlers\n\n    function makeHandler'],
];
patchFile(src, MARK3, intrC);
patchFile(join(dir, 'index.js'), 'lessfs-ts: interrupts', intrJs);

// Fourth patch set: a libfuse thread's state is reused, not leaked. libfuse
// 2.9's loop starts a thread whenever none is idle and ends one whenever more
// than 10 are idle, so under parallel writers threads come and go by the
// thousand. fuse-native gave each new thread a fresh state with two
// uv_async handles (made on the JS thread: the thread's first request first
// waited for an event-loop turn) and never closed them; libuv looks at every
// async handle of the loop each time any one is signalled, so every request
// cost more the longer the mount had run (measured: uv__async_io was the
// largest item of the main thread's CPU profile, 16%, five minutes into a run
// of 32 small-file writes in flight). Now a thread's state goes to a free
// list when the thread ends (the key's destructor) and the next new thread
// takes it: the states number at most the threads ever alive at once.
const MARK4 = '/* lessfs-ts: thread states reused */';
const reuseHelpers = `${MARK4}
static fuse_thread_locals_t *lessfs_free_locals = NULL;
static pthread_mutex_t lessfs_free_locals_lock = PTHREAD_MUTEX_INITIALIZER;
static void lessfs_locals_free (void *data) {
  fuse_thread_locals_t *l = (fuse_thread_locals_t *) data;
  pthread_mutex_lock(&lessfs_free_locals_lock);
  l->lessfs_next = lessfs_free_locals;
  lessfs_free_locals = l;
  pthread_mutex_unlock(&lessfs_free_locals_lock);
}
/* A state an ended thread of the same mount left, or NULL. */
static fuse_thread_locals_t *lessfs_locals_reuse (fuse_thread_t *ft) {
  pthread_mutex_lock(&lessfs_free_locals_lock);
  fuse_thread_locals_t **p = &lessfs_free_locals;
  while (*p != NULL && (*p)->fuse != ft) p = (fuse_thread_locals_t **) &((*p)->lessfs_next);
  fuse_thread_locals_t *l = *p;
  if (l != NULL) *p = (fuse_thread_locals_t *) l->lessfs_next;
  pthread_mutex_unlock(&lessfs_free_locals_lock);
  return l;
}
`;
const reuseC = [
  ['  uv_async_t intr_async;\n\n  // Extended attributes', '  uv_async_t intr_async;\n  void *lessfs_next;\n\n  // Extended attributes'],
  ['static fuse_thread_locals_t* get_thread_locals () {', `${reuseHelpers}\nstatic fuse_thread_locals_t* get_thread_locals () {`],
  ['  if (data != NULL) {\n    return (fuse_thread_locals_t *) data;\n  }\n',
   '  if (data != NULL) {\n    return (fuse_thread_locals_t *) data;\n  }\n\n  fuse_thread_locals_t *reused = lessfs_locals_reuse(ft);\n  if (reused != NULL) {\n    pthread_setspecific(thread_locals_key, (void *) reused);\n    return reused;\n  }\n'],
  ['  pthread_key_create(&(thread_locals_key), NULL); // TODO: add destructor', '  pthread_key_create(&(thread_locals_key), lessfs_locals_free);'],
];
patchFile(src, MARK4, reuseC);

// Fifth patch set: metadata first. Each libfuse thread signalled its own
// uv_async handle and libuv ran the signalled handles in the order they were
// made, so while the JS thread was busy (it is the bottleneck under parallel
// writers: runnable 98% of the time) a lone reader's lookup waited behind
// every write-side request in flight, 1-2 ms each instead of 0.05. Now the
// threads queue their requests in two lanes and signal one handle: lookups,
// attributes, opens, directory listings and reads are taken first, then the
// rest (a run of more than 8 of the first lane lets one other through, so
// writers are never starved). Only requests in flight at the same time are
// reordered, which the kernel never orders among its threads anyway.
const MARK5 = '/* lessfs-ts: metadata first */';
const laneHelpers = `${MARK5}
static pthread_mutex_t lessfs_q_lock = PTHREAD_MUTEX_INITIALIZER;
static fuse_thread_locals_t *lessfs_q_head[2] = { NULL, NULL };
static fuse_thread_locals_t *lessfs_q_tail[2] = { NULL, NULL };
static int lessfs_q_run = 0;
static uv_async_t lessfs_q_async;
static int lessfs_q_ready = 0;
#define LESSFS_Q_FIRST_RUN_MAX 8
#define LESSFS_Q_BATCH_MAX 256
/* Lane 0 (first): requests a reader waits on that change nothing. */
static int lessfs_q_lane (uint32_t op) {
  return (op == op_getattr || op == op_fgetattr || op == op_access || op == op_statfs || op == op_readdir ||
    op == op_readlink || op == op_open || op == op_opendir || op == op_releasedir || op == op_read ||
    op == op_getxattr || op == op_listxattr) ? 0 : 1;
}
static void lessfs_enqueue (fuse_thread_locals_t *l) {
  int lane = lessfs_q_lane(l->op);
  l->lessfs_qnext = NULL;
  pthread_mutex_lock(&lessfs_q_lock);
  if (lessfs_q_tail[lane] != NULL) lessfs_q_tail[lane]->lessfs_qnext = l;
  else lessfs_q_head[lane] = l;
  lessfs_q_tail[lane] = l;
  pthread_mutex_unlock(&lessfs_q_lock);
  uv_async_send(&lessfs_q_async);
}
static fuse_thread_locals_t *lessfs_dequeue (void) {
  fuse_thread_locals_t *l = NULL;
  pthread_mutex_lock(&lessfs_q_lock);
  int first = lessfs_q_run >= LESSFS_Q_FIRST_RUN_MAX && lessfs_q_head[1] != NULL ? 1 : 0;
  for (int k = 0; k < 2 && l == NULL; k++) {
    int lane = first ^ k;
    l = lessfs_q_head[lane];
    if (l != NULL) {
      lessfs_q_head[lane] = (fuse_thread_locals_t *) l->lessfs_qnext;
      if (lessfs_q_head[lane] == NULL) lessfs_q_tail[lane] = NULL;
      lessfs_q_run = lane == 0 ? lessfs_q_run + 1 : 0;
    }
  }
  pthread_mutex_unlock(&lessfs_q_lock);
  return l;
}
static void fuse_native_dispatch (uv_async_t* handle);
/* On the JS thread: at most LESSFS_Q_BATCH_MAX requests a loop turn (timers and I/O run between). */
static void lessfs_q_dispatch (uv_async_t *handle) {
  for (int i = 0; i < LESSFS_Q_BATCH_MAX; i++) {
    fuse_thread_locals_t *l = lessfs_dequeue();
    if (l == NULL) return;
    fuse_native_dispatch(&(l->async));
  }
  uv_async_send(&lessfs_q_async);
}
`;
const laneC = [
  ['  void *lessfs_next;\n', '  void *lessfs_next;\n  void *lessfs_qnext;\n'],
  ['static void populate_stat (uint32_t *ints, struct stat* stat) {', `${laneHelpers}\nstatic void populate_stat (uint32_t *ints, struct stat* stat) {`],
  ['  if (lessfs_req != NULL) fuse_req_interrupt_func(lessfs_req, lessfs_interrupted, l);\\\n  uv_async_send(&(l->async));\\\n',
   '  if (lessfs_req != NULL) fuse_req_interrupt_func(lessfs_req, lessfs_interrupted, l);\\\n  lessfs_enqueue(l);\\\n'],
  ['  int err = uv_async_init(uv_default_loop(), &(ft->async), (uv_async_cb) fuse_native_async_init);',
   '  if (!lessfs_q_ready) {\n    int qerr = uv_async_init(uv_default_loop(), &lessfs_q_async, (uv_async_cb) lessfs_q_dispatch);\n    assert(qerr >= 0);\n    uv_unref((uv_handle_t *) &lessfs_q_async);\n    lessfs_q_ready = 1;\n  }\n  int err = uv_async_init(uv_default_loop(), &(ft->async), (uv_async_cb) fuse_native_async_init);'],
];
patchFile(src, MARK5, laneC);

// Sixth patch set: listed attributes answered on the FUSE thread. libfuse2
// has no READDIRPLUS, so `ls -l` of a directory costs one LOOKUP per name,
// and every request is a round trip through the JS thread (~70 µs here
// against ~30 µs for a C filesystem on the same libfuse). Now the filesystem
// files each listing it answers in a table (Fuse.attrHandoff.list: every name
// with its attributes, a stat of mode 0 for one it does not hand over), in
// the same JS turn it reads them (readdir's answer itself goes out on a later
// tick, after changes that may come between), and a getattr of one of those
// paths (the LOOKUP of a name just listed) is answered from it on the libfuse
// thread; the filesystem can also hand over a path's attributes itself
// (Fuse.attrHandoff.put: what a create or chmod just made, which libfuse asks
// for right after). The table
// is only as good as its generations: the filesystem bumps the table's
// whenever a name may have gone or moved (Fuse.attrHandoff.invalidate()) and
// an inode's whenever its attributes change (invalidate(ino)), synchronously
// before the change is answered, and an entry of an older generation of
// either is never used. A directory listed whole, or handed over as just
// made (empty), is whole until the table's generation moves: every name
// added to it is handed over, so a lookup of a name the table does not hold
// there is answered ENOENT (the lookup before each create). Entries also
// expire after the TTL the filesystem gives, and the table is off until the
// filesystem enables it.
const MARK6 = '/* lessfs-ts: listed attributes */';
const attrHelpers = `${MARK6}
static void populate_stat (uint32_t *ints, struct stat* stat);
#define LESSFS_ATTR_BUCKETS 65536
#define LESSFS_ATTR_MAX 131072
#define LESSFS_ATTR_SLOTS 4096
#define LESSFS_DIR_BUCKETS 1024
typedef struct lessfs_attr { struct lessfs_attr *next; uint64_t hash; uint64_t expires_ns; uint32_t slot; uint32_t ino_gen; struct stat st; char path[]; } lessfs_attr_t;
/* A directory every name of which is in the table (so a name not there does not exist). */
typedef struct lessfs_dir { struct lessfs_dir *next; uint64_t hash; uint64_t expires_ns; char path[]; } lessfs_dir_t;
static pthread_mutex_t lessfs_attr_lock = PTHREAD_MUTEX_INITIALIZER;
static lessfs_attr_t **lessfs_attr_tab = NULL;
static lessfs_dir_t *lessfs_attr_dirs[LESSFS_DIR_BUCKETS];
static uint32_t lessfs_attr_count = 0;
static uint32_t lessfs_attr_dir_count = 0;
static uint32_t lessfs_attr_gen = 0;
static uint32_t lessfs_attr_tab_gen = 0;
/* Per inode (hashed; a collision only drops more): bumped when that inode's attributes change. */
static uint32_t lessfs_attr_ino_gen[LESSFS_ATTR_SLOTS];
static uint64_t lessfs_attr_newest_ns = 0;
static uint64_t lessfs_attr_ttl_ns = 0;
static int lessfs_attr_on = 0;
static uint32_t lessfs_attr_hits = 0;
static uint32_t lessfs_attr_misses = 0;
static uint32_t lessfs_attr_puts = 0;
static uint64_t lessfs_attr_now_ns (void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t) t.tv_sec * 1000000000ULL + (uint64_t) t.tv_nsec;
}
/* FNV-1a of the first len bytes of s. */
static uint64_t lessfs_attr_hash (const char *s, size_t len) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char) s[i]) * 1099511628211ULL;
  return h;
}
/* Is s (len bytes) well-formed UTF-8? Names that are not reach JS as other names, so only these are ever answered as absent. */
static int lessfs_attr_utf8 (const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *) s;
  size_t i = 0;
  while (i < len) {
    unsigned char c = p[i];
    size_t n = c < 0x80 ? 0 : (c & 0xe0) == 0xc0 && c >= 0xc2 ? 1 : (c & 0xf0) == 0xe0 ? 2 : (c & 0xf8) == 0xf0 && c <= 0xf4 ? 3 : 9;
    if (n == 9 || i + n >= len) return 0;
    for (size_t k = 1; k <= n; k++) if ((p[i + k] & 0xc0) != 0x80) return 0;
    if (n == 2 && ((c == 0xe0 && p[i + 1] < 0xa0) || (c == 0xed && p[i + 1] >= 0xa0))) return 0;
    if (n == 3 && ((c == 0xf0 && p[i + 1] < 0x90) || (c == 0xf4 && p[i + 1] >= 0x90))) return 0;
    i += n + 1;
  }
  return 1;
}
/* With the lock held: forget which directories are complete (a name of one may be missing from the table). */
static void lessfs_attr_dirs_clear (void) {
  for (uint32_t b = 0; b < LESSFS_DIR_BUCKETS && lessfs_attr_dir_count > 0; b++) {
    lessfs_dir_t *d = lessfs_attr_dirs[b];
    while (d != NULL) {
      lessfs_dir_t *next = d->next;
      free(d);
      lessfs_attr_dir_count--;
      d = next;
    }
    lessfs_attr_dirs[b] = NULL;
  }
}
/* With the lock held: drop every entry and every complete directory. */
static void lessfs_attr_clear (void) {
  if (lessfs_attr_tab != NULL && lessfs_attr_count > 0) {
    for (uint32_t b = 0; b < LESSFS_ATTR_BUCKETS; b++) {
      lessfs_attr_t *e = lessfs_attr_tab[b];
      while (e != NULL) {
        lessfs_attr_t *next = e->next;
        free(e);
        e = next;
      }
      lessfs_attr_tab[b] = NULL;
    }
    lessfs_attr_count = 0;
  }
  lessfs_attr_dirs_clear();
}
/* With the lock held: is the table usable now (on, current generation, not all expired)? Empties it if not. */
static int lessfs_attr_usable (uint64_t now) {
  int usable = lessfs_attr_on && lessfs_attr_tab_gen == __atomic_load_n(&lessfs_attr_gen, __ATOMIC_SEQ_CST) && now < lessfs_attr_newest_ns + lessfs_attr_ttl_ns;
  if (!usable) lessfs_attr_clear();
  return usable;
}
/* With the lock held: the complete-directory record of path's first len bytes, or NULL. */
static lessfs_dir_t *lessfs_attr_dir (const char *path, size_t len) {
  if (lessfs_attr_dir_count == 0) return NULL;
  uint64_t h = lessfs_attr_hash(path, len);
  for (lessfs_dir_t *d = lessfs_attr_dirs[h % LESSFS_DIR_BUCKETS]; d != NULL; d = d->next) {
    if (d->hash == h && strlen(d->path) == len && memcmp(d->path, path, len) == 0) return d;
  }
  return NULL;
}
/* With the lock held: dir is not known to be complete (any more). */
static void lessfs_attr_dir_drop (const char *dir) {
  size_t len = strlen(dir);
  if (lessfs_attr_dir_count == 0) return;
  uint64_t h = lessfs_attr_hash(dir, len);
  for (lessfs_dir_t **p = &lessfs_attr_dirs[h % LESSFS_DIR_BUCKETS]; *p != NULL; p = &((*p)->next)) {
    if ((*p)->hash == h && strcmp((*p)->path, dir) == 0) {
      lessfs_dir_t *d = *p;
      *p = d->next;
      free(d);
      lessfs_attr_dir_count--;
      return;
    }
  }
}
/* With the lock held: length of the parent of path (0 for a name in the root: its parent is "/"), or -1 for "/". */
static long lessfs_attr_parent_len (const char *path, size_t len) {
  if (len <= 1) return -1;
  for (size_t i = len; i > 0; i--) if (path[i - 1] == '/') return (long) (i - 1);
  return -1;
}
/* With the lock held and the table usable: record dir/name (name NULL: dir is the whole path). 1 if it is in the table now. */
static int lessfs_attr_insert (const char *dir, const char *name, const struct stat *st, uint64_t now) {
  if (name == NULL) name = "";
  size_t dl = strlen(dir);
  size_t nl = strlen(name);
  int root = nl == 0 || (dir[0] == '/' && dir[1] == 0);
  if (lessfs_attr_tab == NULL) lessfs_attr_tab = (lessfs_attr_t **) calloc(LESSFS_ATTR_BUCKETS, sizeof(lessfs_attr_t *));
  if (lessfs_attr_tab == NULL || lessfs_attr_count >= LESSFS_ATTR_MAX) return 0;
  lessfs_attr_t *e = (lessfs_attr_t *) malloc(sizeof(lessfs_attr_t) + dl + nl + 2);
  if (e == NULL) return 0;
  memcpy(e->path, dir, dl);
  size_t at = dl;
  if (!root) e->path[at++] = '/';
  memcpy(e->path + at, name, nl + 1);
  size_t len = at + nl;
  uint64_t h = lessfs_attr_hash(e->path, len);
  lessfs_attr_t **slot = &lessfs_attr_tab[h % LESSFS_ATTR_BUCKETS];
  /* A name listed or handed over again replaces its older entry. */
  for (lessfs_attr_t **p = slot; *p != NULL; p = &((*p)->next)) {
    if ((*p)->hash == h && strcmp((*p)->path, e->path) == 0) {
      lessfs_attr_t *old = *p;
      *p = old->next;
      free(old);
      lessfs_attr_count--;
      break;
    }
  }
  e->hash = h;
  e->slot = (uint32_t) st->st_ino % LESSFS_ATTR_SLOTS;
  e->ino_gen = __atomic_load_n(&lessfs_attr_ino_gen[e->slot], __ATOMIC_SEQ_CST);
  e->st = *st;
  e->expires_ns = now + lessfs_attr_ttl_ns;
  e->next = *slot;
  *slot = e;
  lessfs_attr_count++;
  lessfs_attr_newest_ns = now;
  lessfs_attr_puts++;
  /* A complete parent stays complete with its new name in the table, for another TTL. */
  long pl = lessfs_attr_parent_len(e->path, len);
  if (pl >= 0) {
    lessfs_dir_t *d = lessfs_attr_dir(pl == 0 ? "/" : e->path, pl == 0 ? 1 : (size_t) pl);
    if (d != NULL) d->expires_ns = now + lessfs_attr_ttl_ns;
  }
  return 1;
}
/* With the lock held and the table usable: dir is complete (every name of it is in the table). */
static void lessfs_attr_mark_complete (const char *dir, uint64_t now) {
  size_t len = strlen(dir);
  lessfs_dir_t *d = lessfs_attr_dir(dir, len);
  if (d == NULL) {
    d = (lessfs_dir_t *) malloc(sizeof(lessfs_dir_t) + len + 1);
    if (d == NULL) return;
    memcpy(d->path, dir, len + 1);
    d->hash = lessfs_attr_hash(dir, len);
    d->next = lessfs_attr_dirs[d->hash % LESSFS_DIR_BUCKETS];
    lessfs_attr_dirs[d->hash % LESSFS_DIR_BUCKETS] = d;
    lessfs_attr_dir_count++;
  }
  d->expires_ns = now + lessfs_attr_ttl_ns;
}
/* With the lock held: make the table current (emptied if it was not usable). 0 if it is off. */
static int lessfs_attr_begin (uint64_t now) {
  if (!lessfs_attr_on) return 0;
  if (!lessfs_attr_usable(now)) lessfs_attr_tab_gen = __atomic_load_n(&lessfs_attr_gen, __ATOMIC_SEQ_CST);
  lessfs_attr_newest_ns = now;
  return 1;
}
/*
 * JS thread, a readdir's answer: every name of dir with its attributes
 * (stats[i] NULL or of mode 0: not handed over). The directory counts as
 * complete only if every name went into the table.
 */
static void lessfs_attr_listing (const char *dir, uint32_t count, const char **names, const struct stat *stats, int whole) {
  uint64_t now = lessfs_attr_now_ns();
  pthread_mutex_lock(&lessfs_attr_lock);
  if (lessfs_attr_begin(now)) {
    int all = whole;
    for (uint32_t i = 0; i < count; i++) {
      const char *name = names[i];
      if (name[0] == '.' && (name[1] == 0 || (name[1] == '.' && name[2] == 0))) continue;
      if (stats[i].st_mode == 0 || !lessfs_attr_insert(dir, name, &stats[i], now)) all = 0;
    }
    if (all) lessfs_attr_mark_complete(dir, now);
    else lessfs_attr_dir_drop(dir);
  }
  pthread_mutex_unlock(&lessfs_attr_lock);
}
/* JS thread: path's attributes as of now; with complete, path is a directory known to have no names (just made). */
static void lessfs_attr_handover (const char *path, const struct stat *st, int complete) {
  if (st->st_mode == 0) return;
  uint64_t now = lessfs_attr_now_ns();
  pthread_mutex_lock(&lessfs_attr_lock);
  if (lessfs_attr_begin(now)) {
    /* A name that could not go in may belong to a complete directory: none is complete any more. */
    if (!lessfs_attr_insert(path, NULL, st, now)) lessfs_attr_dirs_clear();
    else if (complete) lessfs_attr_mark_complete(path, now);
  }
  pthread_mutex_unlock(&lessfs_attr_lock);
}
/*
 * libfuse thread: 1 and path's attributes in st if the table has them; -1 if
 * path does not exist (its directory is complete and the name is not in it);
 * 0 if the table does not know.
 */
static int lessfs_attr_get (const char *path, struct stat *st, int absent_ok) {
  if (!__atomic_load_n(&lessfs_attr_on, __ATOMIC_SEQ_CST)) return 0;
  uint64_t now = lessfs_attr_now_ns();
  size_t len = strlen(path);
  uint64_t h = lessfs_attr_hash(path, len);
  int found = 0;
  pthread_mutex_lock(&lessfs_attr_lock);
  if (lessfs_attr_count > 0 && lessfs_attr_usable(now)) {
    lessfs_attr_t *e = lessfs_attr_tab[h % LESSFS_ATTR_BUCKETS];
    while (e != NULL && !(e->hash == h && strcmp(e->path, path) == 0)) e = e->next;
    if (e != NULL) {
      /* The name exists; its attributes serve only while current. */
      if (now < e->expires_ns && e->ino_gen == __atomic_load_n(&lessfs_attr_ino_gen[e->slot], __ATOMIC_SEQ_CST)) {
        *st = e->st;
        found = 1;
        lessfs_attr_hits++;
      }
    } else if (absent_ok) {
      long pl = lessfs_attr_parent_len(path, len);
      if (pl >= 0 && len - (size_t) pl - 1 <= 255 && lessfs_attr_utf8(path + pl + 1, len - (size_t) pl - 1)) {
        lessfs_dir_t *d = lessfs_attr_dir(pl == 0 ? "/" : path, pl == 0 ? 1 : (size_t) pl);
        if (d != NULL && now < d->expires_ns) {
          found = -1;
          lessfs_attr_misses++;
        }
      }
    }
  }
  pthread_mutex_unlock(&lessfs_attr_lock);
  return found;
}
/*
 * Open files (the filesystem's handle numbers and their inodes) and inodes
 * with writes not yet stored or an error not yet reported (counted per
 * hashed slot: a collision only keeps more out): a FLUSH of a file whose
 * inode has neither has nothing to wait for or report, and is answered on
 * the libfuse thread.
 */
#define LESSFS_FH_SLOTS 4096
typedef struct { uint64_t fh; uint32_t ino; } lessfs_fh_t;
static lessfs_fh_t lessfs_fhs[LESSFS_FH_SLOTS];
static uint32_t lessfs_ino_dirty[LESSFS_ATTR_SLOTS];
static uint32_t lessfs_flush_hits = 0;
static int lessfs_flush_clean (const struct fuse_file_info *info) {
  if (info == NULL || !__atomic_load_n(&lessfs_attr_on, __ATOMIC_SEQ_CST)) return 0;
  int clean = 0;
  pthread_mutex_lock(&lessfs_attr_lock);
  const lessfs_fh_t *f = &lessfs_fhs[info->fh % LESSFS_FH_SLOTS];
  if (f->fh == info->fh && f->ino != 0 && __atomic_load_n(&lessfs_ino_dirty[f->ino % LESSFS_ATTR_SLOTS], __ATOMIC_SEQ_CST) == 0) {
    clean = 1;
    lessfs_flush_hits++;
  }
  pthread_mutex_unlock(&lessfs_attr_lock);
  return clean;
}
/* (fh, ino): fh is open on ino; ino 0: fh is closed. */
NAPI_METHOD(fuse_native_attr_file) {
  NAPI_ARGV(2)
  NAPI_ARGV_UINT32(fh, 0)
  NAPI_ARGV_UINT32(ino, 1)
  pthread_mutex_lock(&lessfs_attr_lock);
  lessfs_fh_t *f = &lessfs_fhs[fh % LESSFS_FH_SLOTS];
  if (ino != 0) {
    f->fh = fh;
    f->ino = ino;
  } else if (f->fh == fh) {
    f->ino = 0;
  }
  pthread_mutex_unlock(&lessfs_attr_lock);
  return NULL;
}
/* (ino, dirty): ino now has (1) or no longer has (0) writes not yet stored or an error not yet reported. */
NAPI_METHOD(fuse_native_attr_dirty) {
  NAPI_ARGV(2)
  NAPI_ARGV_UINT32(ino, 0)
  NAPI_ARGV_UINT32(dirty, 1)
  if (dirty) __atomic_add_fetch(&lessfs_ino_dirty[ino % LESSFS_ATTR_SLOTS], 1, __ATOMIC_SEQ_CST);
  else __atomic_sub_fetch(&lessfs_ino_dirty[ino % LESSFS_ATTR_SLOTS], 1, __ATOMIC_SEQ_CST);
  return NULL;
}
/* Names may have changed: nothing in the table is used again. */
NAPI_METHOD(fuse_native_attr_invalidate) {
  __atomic_add_fetch(&lessfs_attr_gen, 1, __ATOMIC_SEQ_CST);
  return NULL;
}
/* (ino): that inode's attributes changed (every name of it). */
NAPI_METHOD(fuse_native_attr_invalidate_ino) {
  NAPI_ARGV(1)
  NAPI_ARGV_UINT32(ino, 0)
  __atomic_add_fetch(&lessfs_attr_ino_gen[ino % LESSFS_ATTR_SLOTS], 1, __ATOMIC_SEQ_CST);
  return NULL;
}
/* (path, stat ints as getattr answers, complete): path's attributes as of now (complete: an empty directory just made). */
NAPI_METHOD(fuse_native_attr_put) {
  NAPI_ARGV(3)
  NAPI_ARGV_UTF8_MALLOC(path, 0)
  NAPI_ARGV_BUFFER_CAST(uint32_t *, ints, 1)
  NAPI_ARGV_UINT32(complete, 2)
  struct stat st;
  memset(&st, 0, sizeof(st));
  populate_stat(ints, &st);
  lessfs_attr_handover(path, &st, complete != 0);
  free(path);
  return NULL;
}
/*
 * (dir, names, stat ints: 18 per name in one array): a listing of dir, filed as the
 * filesystem reads it (synchronously: readdir's own answer goes out on a
 * later tick, after changes that may have come between).
 */
NAPI_METHOD(fuse_native_attr_list) {
  NAPI_ARGV(3)
  NAPI_ARGV_UTF8_MALLOC(dir, 0)
  uint32_t count = 0;
  size_t ints_count = 0;
  uint32_t *ints = NULL;
  napi_get_array_length(env, argv[1], &count);
  if (napi_get_typedarray_info(env, argv[2], NULL, &ints_count, (void **) &ints, NULL, NULL) != napi_ok) ints = NULL;
  const char **names = (const char **) calloc(count + 1, sizeof(char *));
  struct stat *stats = (struct stat *) calloc(count + 1, sizeof(struct stat));
  int whole = names != NULL && stats != NULL && ints != NULL && ints_count == (size_t) count * 18;
  uint32_t n = 0;
  for (uint32_t i = 0; whole && i < count; i++) {
    napi_value raw_name;
    char name[1024];
    size_t name_len = 0;
    napi_get_element(env, argv[1], i, &raw_name);
    if (napi_get_value_string_utf8(env, raw_name, name, sizeof(name), &name_len) != napi_ok || name_len >= sizeof(name) - 1 ||
        (names[n] = strdup(name)) == NULL) {
      whole = 0;
      break;
    }
    memset(&stats[n], 0, sizeof(struct stat));
    populate_stat(ints + (size_t) i * 18, &stats[n]);
    n++;
  }
  if (names != NULL && stats != NULL) lessfs_attr_listing(dir, n, names, stats, whole);
  for (uint32_t k = 0; k < n; k++) free((void *) names[k]);
  free(names);
  free(stats);
  free(dir);
  return NULL;
}
/* (on, ttlMs): on 0 turns the table off and empties it. */
NAPI_METHOD(fuse_native_attr_enable) {
  NAPI_ARGV(2)
  NAPI_ARGV_UINT32(on, 0)
  NAPI_ARGV_UINT32(ttl_ms, 1)
  __atomic_add_fetch(&lessfs_attr_gen, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_lock(&lessfs_attr_lock);
  lessfs_attr_ttl_ns = (uint64_t) ttl_ms * 1000000ULL;
  __atomic_store_n(&lessfs_attr_on, on ? 1 : 0, __ATOMIC_SEQ_CST);
  lessfs_attr_clear();
  pthread_mutex_unlock(&lessfs_attr_lock);
  return NULL;
}
/* [hits, puts, entries held, names answered absent, flushes answered] since the addon loaded. */
NAPI_METHOD(fuse_native_attr_stats) {
  napi_value arr;
  napi_value v;
  pthread_mutex_lock(&lessfs_attr_lock);
  uint32_t vals[5] = { lessfs_attr_hits, lessfs_attr_puts, lessfs_attr_count, lessfs_attr_misses, lessfs_flush_hits };
  pthread_mutex_unlock(&lessfs_attr_lock);
  napi_create_array_with_length(env, 5, &arr);
  for (uint32_t i = 0; i < 5; i++) {
    napi_create_uint32(env, vals[i], &v);
    napi_set_element(env, arr, i, v);
  }
  return arr;
}
`;
const attrC = [
  ['static void populate_stat (uint32_t *ints, struct stat* stat) {', `${attrHelpers}\nstatic void populate_stat (uint32_t *ints, struct stat* stat) {`],
  ['FUSE_METHOD(fgetattr, 2, 1,', `/* lessfs-ts: a getattr of a name just listed or handed over is answered here, on the libfuse thread. */
static int fuse_native_fgetattr (const char *path, struct stat *stat, struct fuse_file_info *info);
static int lessfs_fgetattr (const char *path, struct stat *stat, struct fuse_file_info *info) {
  if (path != NULL && lessfs_attr_get(path, stat, 0) == 1) return 0;
  return fuse_native_fgetattr(path, stat, info);
}
static int lessfs_getattr (const char *path, struct stat *stat) {
  int known = lessfs_attr_get(path, stat, 1);
  if (known == 1) return 0;
  if (known == -1) return -ENOENT;
  return fuse_native_getattr(path, stat);
}

FUSE_METHOD(fgetattr, 2, 1,`],
  ['FUSE_METHOD_VOID(fsync, 3, 0,', 'static int lessfs_flush (const char *path, struct fuse_file_info *info) {\n  if (lessfs_flush_clean(info)) return 0;\n  return fuse_native_flush(path, info);\n}\n\nFUSE_METHOD_VOID(fsync, 3, 0,'],
  ['  if (implemented[op_flush]) ops.flush = fuse_native_flush;', '  if (implemented[op_flush]) ops.flush = lessfs_flush;'],
  // fuse-native answers fgetattr with the fs's getattr of the path (libfuse asks it right after a create): the same table answers it.
  ['  if (implemented[op_fgetattr]) ops.fgetattr = fuse_native_fgetattr;', '  if (implemented[op_fgetattr]) ops.fgetattr = lessfs_fgetattr;'],
  ['  if (implemented[op_getattr]) ops.getattr = fuse_native_getattr;', '  if (implemented[op_getattr]) ops.getattr = lessfs_getattr;'],
  ['  NAPI_EXPORT_FUNCTION(fuse_native_get_context)', '  NAPI_EXPORT_FUNCTION(fuse_native_get_context)\n  NAPI_EXPORT_FUNCTION(fuse_native_attr_invalidate)\n  NAPI_EXPORT_FUNCTION(fuse_native_attr_invalidate_ino)\n  NAPI_EXPORT_FUNCTION(fuse_native_attr_put)\n  NAPI_EXPORT_FUNCTION(fuse_native_attr_list)\n  NAPI_EXPORT_FUNCTION(fuse_native_attr_file)\n  NAPI_EXPORT_FUNCTION(fuse_native_attr_dirty)\n  NAPI_EXPORT_FUNCTION(fuse_native_attr_enable)\n  NAPI_EXPORT_FUNCTION(fuse_native_attr_stats)'],
];
const attrJs = [
  ['Fuse.EPERM = -1\n', `// lessfs-ts: listed attributes (one table per process; see scripts/build-fuse-native.mjs)
Fuse.attrHandoff = binding.fuse_native_attr_invalidate ? {
  invalidate: (ino) => ino === undefined ? binding.fuse_native_attr_invalidate() : binding.fuse_native_attr_invalidate_ino(ino),
  put: (path, stat, emptyDir) => binding.fuse_native_attr_put(path, getStatArray(stat), emptyDir ? 1 : 0),
  list: (dir, names, stats) => binding.fuse_native_attr_list(dir, names, packStats(stats)),
  enable: (on, ttlMs) => binding.fuse_native_attr_enable(on ? 1 : 0, ttlMs),
  file: (fh, ino) => binding.fuse_native_attr_file(fh, ino),
  dirty: (ino, dirty) => binding.fuse_native_attr_dirty(ino, dirty ? 1 : 0),
  stats: () => { const s = binding.fuse_native_attr_stats(); return { hits: s[0], puts: s[1], entries: s[2], absent: s[3], flushes: s[4] } }
} : undefined

// lessfs-ts: every stat of a listing in one array, 18 numbers each (getStatArray's layout), not one array per name
function packStats (stats) {
  const ints = new Uint32Array(stats.length * 18)
  for (let i = 0; i < stats.length; i++) {
    const stat = stats[i]
    const o = i * 18
    ints[o] = stat.mode || 0
    ints[o + 1] = stat.uid || 0
    ints[o + 2] = stat.gid || 0
    setDoubleInt(ints, o + 3, stat.size || 0)
    ints[o + 5] = stat.dev || 0
    ints[o + 6] = stat.nlink || 1
    ints[o + 7] = stat.ino || 0
    ints[o + 8] = stat.rdev || 0
    ints[o + 9] = stat.blksize || 0
    setDoubleInt(ints, o + 10, stat.blocks || 0)
    setDoubleInt(ints, o + 12, toDateMS(stat.atime))
    setDoubleInt(ints, o + 14, toDateMS(stat.mtime))
    setDoubleInt(ints, o + 16, toDateMS(stat.ctime))
  }
  return ints
}

Fuse.EPERM = -1
`],
];
patchFile(src, MARK6, attrC);
patchFile(join(dir, 'index.js'), 'lessfs-ts: listed attributes', attrJs);

// Seventh patch set: reads served from the data file on the libfuse thread.
// The kernel sends a FUSE file's reads one at a time, so a cold sequential
// read is a chain of round trips; through the JS thread each costs about
// twice what the null handler's does (BENCHMARKS.md). The filesystem hands
// over, for an inode it just read, where the next blocks are in its data
// file (Fuse.readHandoff.put: per block the byte offset and stored length
// of an uncompressed block, 0 for a hole, a negative length for one it must answer itself:
// compressed, not yet written, dirty), with the file's size; a read of those
// blocks through a handle of that inode is then answered here with pread(2)
// of the data file straight into libfuse's buffer. It is only as good as its
// generations: an inode's (the listed-attributes table's, bumped before its
// block map or size changes: Fuse.attrHandoff.invalidate(ino)) and the
// windows' own (Fuse.readHandoff.invalidate(), when any file's content may
// have changed: a slave's replicated transactions, a slave dropping those it
// had not made durable; not when names change). Each read checks both
// before and after its pread (an extent can only be rewritten once the
// change that freed it has bumped them), and that the inode has no writes
// queued. Anything it cannot answer (a short read, an error) goes to JS.
const MARK7 = '/* lessfs-ts: reads from the data file */';
const extHelpers = `${MARK7}
#include <fcntl.h>
#include <errno.h>
#define LESSFS_EXT_SLOTS 64
#define LESSFS_EXT_BLOCKS_MAX 4096
/* One inode's window of blocks: ext[2 * i], ext[2 * i + 1] = data-file offset and stored length of block first + i (0: hole, negative: not here). */
typedef struct { uint32_t ino; uint32_t ino_gen; uint32_t tab_gen; uint32_t count; uint64_t first; uint64_t size; int64_t *ext; } lessfs_ext_map_t;
static pthread_mutex_t lessfs_ext_lock = PTHREAD_MUTEX_INITIALIZER;
static lessfs_ext_map_t lessfs_ext_maps[LESSFS_EXT_SLOTS];
static int lessfs_ext_fd = -1;
static uint32_t lessfs_ext_fd_gen = 0;
/* Bumped when any file's content may have changed (not only one inode's). */
static uint32_t lessfs_ext_gen = 0;
static uint32_t lessfs_ext_bs = 0;
static int lessfs_ext_on = 0;
static uint32_t lessfs_ext_hits = 0;
static uint32_t lessfs_ext_puts = 0;
/* With lessfs_ext_lock held: forget every window. */
static void lessfs_ext_clear (void) {
  for (uint32_t i = 0; i < LESSFS_EXT_SLOTS; i++) {
    free(lessfs_ext_maps[i].ext);
    memset(&lessfs_ext_maps[i], 0, sizeof(lessfs_ext_map_t));
  }
}
/* Are ino's window (taken under ino_gen, tab_gen) and the data file (fd_gen) still current, with nothing queued for ino? */
static int lessfs_ext_current (uint32_t ino, uint32_t ino_gen, uint32_t tab_gen, uint32_t fd_gen) {
  return __atomic_load_n(&lessfs_ext_on, __ATOMIC_SEQ_CST) &&
    ino_gen == __atomic_load_n(&lessfs_attr_ino_gen[ino % LESSFS_ATTR_SLOTS], __ATOMIC_SEQ_CST) &&
    tab_gen == __atomic_load_n(&lessfs_ext_gen, __ATOMIC_SEQ_CST) &&
    fd_gen == __atomic_load_n(&lessfs_ext_fd_gen, __ATOMIC_SEQ_CST) &&
    __atomic_load_n(&lessfs_ino_dirty[ino % LESSFS_ATTR_SLOTS], __ATOMIC_SEQ_CST) == 0;
}
/*
 * libfuse thread: 1 and *got the bytes read into buf if the window of the
 * handle's inode answers this read; 0 if JS must.
 */
static int lessfs_ext_read (const struct fuse_file_info *info, char *buf, size_t len, off_t offset, int *got) {
  if (info == NULL || offset < 0 || len == 0 || !__atomic_load_n(&lessfs_ext_on, __ATOMIC_SEQ_CST)) return 0;
  pthread_mutex_lock(&lessfs_attr_lock);
  const lessfs_fh_t *f = &lessfs_fhs[info->fh % LESSFS_FH_SLOTS];
  uint32_t ino = f->fh == info->fh ? f->ino : 0;
  pthread_mutex_unlock(&lessfs_attr_lock);
  if (ino == 0) return 0;
  int64_t ext[8];
  uint32_t ino_gen = 0, tab_gen = 0, fd_gen = 0;
  uint64_t end = 0, first = 0, last = 0;
  int fd = -1;
  int ok = 0;
  pthread_mutex_lock(&lessfs_ext_lock);
  uint64_t bs = lessfs_ext_bs;
  const lessfs_ext_map_t *m = &lessfs_ext_maps[ino % LESSFS_EXT_SLOTS];
  if (m->ino == ino && m->ext != NULL && lessfs_ext_fd >= 0 && bs > 0) {
    ino_gen = m->ino_gen;
    tab_gen = m->tab_gen;
    fd_gen = __atomic_load_n(&lessfs_ext_fd_gen, __ATOMIC_SEQ_CST);
    fd = lessfs_ext_fd;
    end = (uint64_t) offset + len < m->size ? (uint64_t) offset + len : m->size;
    if ((uint64_t) offset >= m->size) {
      ok = 1;
      end = (uint64_t) offset;
    } else {
      first = (uint64_t) offset / bs;
      last = (end - 1) / bs;
      ok = first >= m->first && last < m->first + m->count && last - first < 4;
      for (uint64_t b = first; ok && b <= last; b++) {
        ext[2 * (b - first)] = m->ext[2 * (b - m->first)];
        ext[2 * (b - first) + 1] = m->ext[2 * (b - m->first) + 1];
        if (ext[2 * (b - first) + 1] < 0 || (uint64_t) ext[2 * (b - first) + 1] > bs) ok = 0;
      }
    }
  }
  pthread_mutex_unlock(&lessfs_ext_lock);
  if (!ok || !lessfs_ext_current(ino, ino_gen, tab_gen, fd_gen)) return 0;
  for (uint64_t b = first; end > (uint64_t) offset && b <= last; b++) {
    uint64_t from = b * bs > (uint64_t) offset ? b * bs : (uint64_t) offset;
    uint64_t to = (b + 1) * bs < end ? (b + 1) * bs : end;
    uint64_t stored = (uint64_t) ext[2 * (b - first) + 1];
    uint64_t at = from - b * bs;
    char *out = buf + (from - (uint64_t) offset);
    /* Bytes past the stored length of a block (and all of a hole) read as zeros. */
    uint64_t data_to = b * bs + stored < to ? b * bs + stored : to;
    size_t done = 0;
    while (from + done < data_to) {
      ssize_t n = pread(fd, out + done, (size_t) (data_to - from - done), (off_t) ((uint64_t) ext[2 * (b - first)] + at + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return 0;
      done += (size_t) n;
    }
    if (from + done < to) memset(out + done, 0, (size_t) (to - from - done));
  }
  /* What the pread got is this inode's only if nothing moved meanwhile. */
  if (!lessfs_ext_current(ino, ino_gen, tab_gen, fd_gen)) return 0;
  __atomic_add_fetch(&lessfs_ext_hits, 1, __ATOMIC_SEQ_CST);
  *got = (int) (end - (uint64_t) offset);
  return 1;
}
/* (path, block bytes): the data file, opened read-only here ('' closes it). */
NAPI_METHOD(fuse_native_ext_open) {
  NAPI_ARGV(2)
  NAPI_ARGV_UTF8_MALLOC(path, 0)
  NAPI_ARGV_UINT32(bs, 1)
  int fd = path[0] != 0 ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  int err = path[0] != 0 && fd < 0 ? errno : 0;
  free(path);
  __atomic_add_fetch(&lessfs_ext_fd_gen, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_lock(&lessfs_ext_lock);
  /* An fd closed here may still be in a pread: its answer is dropped (fd_gen moved), whatever it read. */
  if (lessfs_ext_fd >= 0) close(lessfs_ext_fd);
  lessfs_ext_fd = fd;
  lessfs_ext_bs = bs;
  lessfs_ext_clear();
  pthread_mutex_unlock(&lessfs_ext_lock);
  napi_value res;
  napi_create_int32(env, err, &res);
  return res;
}
/* (ino, first block, size in bytes, Float64Array of 2 numbers per block): ino's window as of now. */
NAPI_METHOD(fuse_native_ext_put) {
  NAPI_ARGV(4)
  NAPI_ARGV_UINT32(ino, 0)
  double first = 0;
  double size = 0;
  napi_get_value_double(env, argv[1], &first);
  napi_get_value_double(env, argv[2], &size);
  size_t n = 0;
  double *vals = NULL;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, argv[3], &type, &n, (void **) &vals, NULL, NULL) != napi_ok || type != napi_float64_array) vals = NULL;
  if (vals == NULL || ino == 0 || n % 2 != 0 || n / 2 > LESSFS_EXT_BLOCKS_MAX || first < 0 || size < 0) return NULL;
  int64_t *ext = (int64_t *) malloc((n + 1) * sizeof(int64_t));
  if (ext == NULL) return NULL;
  for (size_t i = 0; i < n; i++) ext[i] = (int64_t) vals[i];
  pthread_mutex_lock(&lessfs_ext_lock);
  lessfs_ext_map_t *m = &lessfs_ext_maps[ino % LESSFS_EXT_SLOTS];
  free(m->ext);
  m->ino = ino;
  /* The generations of now: this window describes the inode as the filesystem has it in this turn. */
  m->ino_gen = __atomic_load_n(&lessfs_attr_ino_gen[ino % LESSFS_ATTR_SLOTS], __ATOMIC_SEQ_CST);
  m->tab_gen = __atomic_load_n(&lessfs_ext_gen, __ATOMIC_SEQ_CST);
  m->first = (uint64_t) first;
  m->size = (uint64_t) size;
  m->count = (uint32_t) (n / 2);
  m->ext = ext;
  lessfs_ext_puts++;
  pthread_mutex_unlock(&lessfs_ext_lock);
  return NULL;
}
/* Any file's content may have changed: no window handed over before is used again. */
NAPI_METHOD(fuse_native_ext_invalidate) {
  __atomic_add_fetch(&lessfs_ext_gen, 1, __ATOMIC_SEQ_CST);
  return NULL;
}
/* (on): off forgets every window. */
NAPI_METHOD(fuse_native_ext_enable) {
  NAPI_ARGV(1)
  NAPI_ARGV_UINT32(on, 0)
  __atomic_add_fetch(&lessfs_ext_gen, 1, __ATOMIC_SEQ_CST);
  pthread_mutex_lock(&lessfs_ext_lock);
  __atomic_store_n(&lessfs_ext_on, on ? 1 : 0, __ATOMIC_SEQ_CST);
  lessfs_ext_clear();
  pthread_mutex_unlock(&lessfs_ext_lock);
  return NULL;
}
/* [reads answered here, windows handed over] since the addon loaded. */
NAPI_METHOD(fuse_native_ext_stats) {
  napi_value arr;
  napi_value v;
  uint32_t vals[2] = { __atomic_load_n(&lessfs_ext_hits, __ATOMIC_SEQ_CST), lessfs_ext_puts };
  napi_create_array_with_length(env, 2, &arr);
  for (uint32_t i = 0; i < 2; i++) {
    napi_create_uint32(env, vals[i], &v);
    napi_set_element(env, arr, i, v);
  }
  return arr;
}
static int fuse_native_read (const char *path, char *buf, size_t len, off_t offset, struct fuse_file_info *info);
static int lessfs_read (const char *path, char *buf, size_t len, off_t offset, struct fuse_file_info *info) {
  int got = 0;
  if (lessfs_ext_read(info, buf, len, offset, &got)) return got;
  return fuse_native_read(path, buf, len, offset, info);
}
`;
const extC = [
  ['FUSE_METHOD(read, 6, 2,', `${extHelpers}\nFUSE_METHOD(read, 6, 2,`],
  ['  if (implemented[op_read]) ops.read = fuse_native_read;', '  if (implemented[op_read]) ops.read = lessfs_read;'],
  ['  NAPI_EXPORT_FUNCTION(fuse_native_attr_stats)', '  NAPI_EXPORT_FUNCTION(fuse_native_attr_stats)\n  NAPI_EXPORT_FUNCTION(fuse_native_ext_open)\n  NAPI_EXPORT_FUNCTION(fuse_native_ext_put)\n  NAPI_EXPORT_FUNCTION(fuse_native_ext_invalidate)\n  NAPI_EXPORT_FUNCTION(fuse_native_ext_enable)\n  NAPI_EXPORT_FUNCTION(fuse_native_ext_stats)'],
];
const extJs = [
  ['Fuse.EPERM = -1\n', `// lessfs-ts: reads from the data file (see scripts/build-fuse-native.mjs, seventh patch set)
Fuse.readHandoff = binding.fuse_native_ext_put ? {
  open: (path, blockBytes) => binding.fuse_native_ext_open(path, blockBytes),
  put: (ino, firstBlock, sizeBytes, extents) => binding.fuse_native_ext_put(ino, firstBlock, sizeBytes, extents),
  invalidate: () => binding.fuse_native_ext_invalidate(),
  enable: (on) => binding.fuse_native_ext_enable(on ? 1 : 0),
  stats: () => { const s = binding.fuse_native_ext_stats(); return { hits: s[0], puts: s[1] } }
} : undefined

Fuse.EPERM = -1
`],
];
patchFile(src, MARK7, extC);
patchFile(join(dir, 'index.js'), 'lessfs-ts: reads from the data file', extJs);

const built = join(dir, 'build', 'Release', '.lessfs-patched-v15');
if (existsSync(built) && existsSync(join(dir, 'build', 'Release', 'fuse.node')) && process.env.LESSFS_REBUILD_FUSE !== '1') {
  console.error('build-fuse-native: patched addon already built');
  process.exit(0);
}
const npmGyp = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
const gyp = existsSync(npmGyp) ? [process.execPath, [npmGyp]] : ['node-gyp', []];
try {
  // Build against the local Node headers (this machine has no internet for node-gyp to fetch them).
  const nodedir = process.env.npm_config_nodedir || (existsSync(join(dirname(process.execPath), '..', 'include', 'node', 'node.h')) ? join(dirname(process.execPath), '..') : undefined);
  const args = [...gyp[1], 'rebuild', ...(nodedir ? [`--nodedir=${nodedir}`] : [])];
  execFileSync(gyp[0], args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  writeFileSync(built, 'fuse-native.c patched and rebuilt by lessfs-ts scripts/build-fuse-native.mjs\n');
  console.error('build-fuse-native: rebuilt fuse-native with the utimens, caller context, interrupt, thread-state, metadata-first, listed-attributes and data-file-read patches');
} catch (err) {
  console.error(`build-fuse-native: WARNING: rebuilding fuse-native failed (${String(err.stderr ?? err.message).trim().split('\n').slice(-3).join(' / ')}); the prebuilt addon stays in use: explicit mtimes (utimens) are not kept, new files are root's, a request waiting in lessfs does not end when its caller is killed, requests get slower the longer a mount runs under parallel writers, a lone reader's lookups wait behind every write in flight, and every lookup after a listing and every read is a round trip through JS`);
}
