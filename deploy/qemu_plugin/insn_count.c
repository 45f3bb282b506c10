/* QEMU TCG plugin: counts the guest instructions executed between the entry
 * of a "begin" and of an "end" function (the app's mcuf_invoke_begin/_end
 * around Invoke()), once per pair, and writes the counts to a file:
 *
 *   qemu-system-arm ... -plugin libinsn_count.so,begin=0xADDR,end=0xADDR,out=FILE
 *
 * Counting is per translated block: a block adds its instruction count when
 * it starts executing. The declarations below are the few functions of QEMU's
 * plugin API (API version 1, QEMU 7.x) this plugin calls; QEMU resolves them
 * when it loads the plugin. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS };
typedef void (*tb_trans_cb)(qemu_plugin_id_t id, struct qemu_plugin_tb* tb);
typedef void (*vcpu_udata_cb)(unsigned int vcpu_index, void* userdata);
typedef void (*udata_cb)(qemu_plugin_id_t id, void* userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, tb_trans_cb cb);
void qemu_plugin_register_vcpu_tb_exec_cb(struct qemu_plugin_tb* tb, vcpu_udata_cb cb,
                                          enum qemu_plugin_cb_flags flags, void* userdata);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb* tb);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb* tb);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, udata_cb cb, void* userdata);

#define EXPORT __attribute__((visibility("default")))
EXPORT int qemu_plugin_version = 1;

enum { kMaxPairs = 4096 };
static uint64_t begin_addr, end_addr;
static const char* out_path;
static int counting;
static uint64_t count;
static uint64_t counts[kMaxPairs];
static int pairs;

/* userdata packs the block's start address (bit 0 free: Thumb code is
 * 2-aligned) with its instruction count in the upper 16 bits of a 64-bit word. */
static void on_exec(unsigned int vcpu, void* userdata) {
  uint64_t packed = (uint64_t)(uintptr_t)userdata;
  uint64_t addr = packed & 0xFFFFFFFFull, n = packed >> 48;
  (void)vcpu;
  if (addr == begin_addr) {
    counting = 1;
    count = 0;
  } else if (addr == end_addr && counting) {
    counting = 0;
    if (pairs < kMaxPairs) counts[pairs++] = count;
    return;
  }
  if (counting) count += n;
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  uint64_t packed = (qemu_plugin_tb_vaddr(tb) & 0xFFFFFFFFull) | ((uint64_t)qemu_plugin_tb_n_insns(tb) << 48);
  (void)id;
  qemu_plugin_register_vcpu_tb_exec_cb(tb, on_exec, QEMU_PLUGIN_CB_NO_REGS, (void*)(uintptr_t)packed);
}

static void write_counts(qemu_plugin_id_t id, void* userdata) {
  FILE* out = fopen(out_path, "w");
  (void)id;
  (void)userdata;
  if (!out) return;
  for (int i = 0; i < pairs; ++i) fprintf(out, "%llu\n", (unsigned long long)counts[i]);
  fclose(out);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t* info, int argc, char** argv) {
  (void)info;
  for (int i = 0; i < argc; ++i) {
    const char* arg = argv[i];
    if (!strncmp(arg, "arg=", 4)) arg += 4;  /* QEMU < 6.1 spelling */
    if (!strncmp(arg, "begin=", 6)) begin_addr = strtoull(arg + 6, NULL, 0) & ~1ull;
    if (!strncmp(arg, "end=", 4)) end_addr = strtoull(arg + 4, NULL, 0) & ~1ull;
    if (!strncmp(arg, "out=", 4)) out_path = arg + 4;
  }
  if (!begin_addr || !end_addr || !out_path) {
    fprintf(stderr, "insn_count: needs begin=ADDR,end=ADDR,out=FILE\n");
    return 1;
  }
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, write_counts, NULL);
  return 0;
}
