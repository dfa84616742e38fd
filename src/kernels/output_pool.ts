/**
 * Recycling of the native kernels' large output arrays.
 *
 * Why: a fresh multi-megabyte Float32Array costs more in first-touch page faults than the
 * memory-bound kernel that fills it (measured here: ~1.6 ms of faults vs ~0.5 ms of work for a
 * 6 MB output), and a ResNet step makes hundreds of them. Reusing the arrays of tensors that
 * tfjs has disposed removes that cost.
 *
 * Safety: an array is reused only when no one but the backend can still see it. The pool
 * watches the cpu backend's entry points: an output array goes back to the pool when tfjs
 * disposes its data, unless it was ever handed out (`readSync`/`read`, i.e. `dataSync()`,
 * `data()`, `bufferSync()`) or its buffer was registered a second time (a kernel that returns a
 * view of it, such as Slice's `subarray`). Those arrays are left to the garbage collector.
 */
import type * as tf from '@tensorflow/tfjs';
import type { CpuBackend } from './cpu_backend';

/** Outputs smaller than this (in floats) are plain allocations: small arrays are cheap. */
const MIN_POOLED_LENGTH = 16384;

/**
 * Default bytes kept for reuse: a training step's arrays come back at its end and are all needed
 * again by the next, so the pool must hold a step's worth (measured: ~470 MB for the main job's
 * SupCon step of 512 ResNet-8 images; less than that and every step re-allocates, and page-faults,
 * the difference).
 */
export const DEFAULT_CAPACITY_BYTES = 1024 * 1024 * 1024;

type Ownership = 'new' | 'held' | 'shared' | 'free';

interface Block {
  array: Float32Array;
  state: Ownership;
  dataId: tf.DataId | null;
  /** Pool generation the block was handed out in: events while detached were not observed. */
  generation: number;
  /** Stamp of the block's latest return to the pool (its entry in the eviction queue). */
  freedAt?: number;
}

/** Counters of the pool, for tests and benchmarks. */
export interface OutputPoolStats {
  /** Arrays handed out again instead of allocated. */
  reused: number;
  /** Pooled-size arrays allocated fresh. */
  allocated: number;
  /** Arrays returned to the pool on dispose. */
  recycled: number;
  /** Arrays that escaped (read out or aliased) and were left to the garbage collector. */
  escaped: number;
  /** Bytes waiting in the pool. */
  freeBytes: number;
}

interface BackendHooks {
  write: (values: unknown, shape: number[], dtype: tf.DataType) => tf.DataId;
  move: (dataId: tf.DataId, values: unknown, shape: number[], dtype: tf.DataType, refCount: number) => void;
  readSync: (dataId: tf.DataId) => unknown;
  disposeData: (dataId: tf.DataId, force?: boolean) => boolean;
}

const HOOKED_METHODS = ['write', 'move', 'readSync', 'disposeData'] as const;

type HookableBackend = CpuBackend & BackendHooks & { data: CpuBackend['data'] & { has(dataId: tf.DataId): boolean } };

class OutputPool {
  private readonly blocks = new WeakMap<ArrayBufferLike, Block>();
  private readonly free = new Map<number, Block[]>();
  /** Hooked backends, with the instance's own methods they had before (usually none). */
  private readonly hooked = new Map<HookableBackend, Partial<BackendHooks>>();
  private capBytes = DEFAULT_CAPACITY_BYTES;
  /** Free blocks in the order they were freed, with their stamps (stale entries are skipped). */
  private freeOrder: Array<{ block: Block; stamp: number }> = [];
  private freeStamp = 0;
  private generation = 0;
  private stats: OutputPoolStats = { reused: 0, allocated: 0, recycled: 0, escaped: 0, freeBytes: 0 };

  /** A Float32Array of `length` elements with undefined contents (the kernel writes it all). */
  acquire(length: number): Float32Array {
    if (length < MIN_POOLED_LENGTH || this.hooked.size === 0) return new Float32Array(length);
    const block = this.free.get(length)?.pop();
    if (block) this.stats.freeBytes -= length * 4;
    if (block && block.state === 'free') {
      this.stats.reused++;
      block.state = 'new';
      block.dataId = null;
      block.generation = this.generation;
      return block.array;
    }
    const array = new Float32Array(length);
    this.blocks.set(array.buffer, { array, state: 'new', dataId: null, generation: this.generation });
    this.stats.allocated++;
    return array;
  }

  /**
   * Returns an array from {@link acquire} that was never given to a tensor (a kernel's private
   * scratch kept between its forward and backward calls) to the pool.
   */
  release(array: Float32Array): void {
    const block = this.blocks.get(array.buffer);
    if (!block || block.state !== 'new' || block.array !== array || block.generation !== this.generation) return;
    this.toFree(block);
  }

  /** Starts recycling on `backend` (idempotent). */
  attach(backend: CpuBackend): void {
    const b = backend as HookableBackend;
    if (this.hooked.has(b) || typeof b.write !== 'function' || typeof b.disposeData !== 'function') return;
    const original: BackendHooks = { write: b.write, move: b.move, readSync: b.readSync, disposeData: b.disposeData };
    const own: Partial<BackendHooks> = {};
    for (const name of HOOKED_METHODS) {
      if (Object.prototype.hasOwnProperty.call(b, name)) (own as Record<string, unknown>)[name] = b[name];
    }
    this.hooked.set(b, own);
    const pool = this;
    // Own-property overrides of the instance; detach() puts back what was there before.
    b.write = function (values, shape, dtype) {
      const dataId = original.write.call(this, values, shape, dtype);
      pool.noteRegistered(values, dataId);
      return dataId;
    };
    b.move = function (dataId, values, shape, dtype, refCount) {
      original.move.call(this, dataId, values, shape, dtype, refCount);
      pool.noteRegistered(values, dataId);
    };
    b.readSync = function (dataId) {
      pool.noteEscaped(this.data.has(dataId) ? this.data.get(dataId).values : undefined);
      return original.readSync.call(this, dataId);
    };
    b.disposeData = function (dataId, force) {
      const values = this.data.has(dataId) ? this.data.get(dataId).values : undefined;
      const released = original.disposeData.call(this, dataId, force);
      if (released && !this.data.has(dataId)) pool.noteDisposed(values, dataId);
      return released;
    };
  }

  /** Stops recycling on every backend and drops the pooled arrays. */
  detach(): void {
    for (const [backend, own] of this.hooked) {
      const target = backend as unknown as Record<string, unknown>;
      for (const name of HOOKED_METHODS) {
        if (name in own) target[name] = own[name];
        else delete target[name];
      }
    }
    this.hooked.clear();
    this.releaseFree();
    this.generation++;  // blocks handed out so far are never recycled: their fate is unknown now
  }

  /** Sets the most bytes kept for reuse (0 disables reuse); drops the pool if it is over. */
  setCapacity(bytes: number): void {
    this.capBytes = bytes;
    if (this.stats.freeBytes > bytes) this.releaseFree();
  }

  /** Drops the arrays waiting for reuse (to the garbage collector). */
  releaseFree(): void {
    for (const list of this.free.values()) for (const block of list) this.blocks.delete(block.array.buffer);
    this.free.clear();
    this.freeOrder = [];
    this.stats.freeBytes = 0;
  }

  snapshot(): OutputPoolStats {
    return { ...this.stats };
  }

  /** The block whose memory `values` views, whatever the view's type, offset or length. */
  private blockOf(values: unknown): Block | undefined {
    return ArrayBuffer.isView(values) ? this.blocks.get(values.buffer) : undefined;
  }

  private escape(block: Block): void {
    if (block.state !== 'shared') this.stats.escaped++;
    block.state = 'shared';
  }

  private noteRegistered(values: unknown, dataId: tf.DataId): void {
    const block = this.blockOf(values);
    if (!block) return;
    if (block.state === 'new' && values === block.array) {
      block.state = 'held';
      block.dataId = dataId;
    } else if (!(block.state === 'held' && block.dataId === dataId && values === block.array)) {
      this.escape(block);  // a second registration of the same memory: a view or a copy of the reference
    }
  }

  private noteEscaped(values: unknown): void {
    const block = this.blockOf(values);
    if (block) this.escape(block);
  }

  private noteDisposed(values: unknown, dataId: tf.DataId): void {
    const block = this.blockOf(values);
    if (!block || block.state !== 'held' || block.dataId !== dataId || values !== block.array) return;
    if (block.generation !== this.generation) return;
    this.toFree(block);
  }

  private toFree(block: Block): void {
    const bytes = block.array.length * 4;
    if (bytes > this.capBytes) {
      this.blocks.delete(block.array.buffer);  // larger than the whole pool: to the garbage collector
      return;
    }
    // Over capacity: the least recently freed blocks go to the garbage collector first.
    while (this.stats.freeBytes + bytes > this.capBytes) this.evictOldest();
    block.state = 'free';
    block.dataId = null;
    let list = this.free.get(block.array.length);
    if (!list) this.free.set(block.array.length, (list = []));
    list.push(block);
    block.freedAt = ++this.freeStamp;
    this.freeOrder.push({ block, stamp: block.freedAt });
    if (this.freeOrder.length > 64 && this.freeOrder.length > 4 * this.countFree()) {
      this.freeOrder = this.freeOrder.filter((e) => this.isCurrent(e));
    }
    this.stats.freeBytes += bytes;
    this.stats.recycled++;
  }

  private countFree(): number {
    let n = 0;
    for (const list of this.free.values()) n += list.length;
    return n;
  }

  private isCurrent(e: { block: Block; stamp: number }): boolean {
    return e.block.state === 'free' && e.block.freedAt === e.stamp;
  }

  private evictOldest(): void {
    for (;;) {
      const entry = this.freeOrder.shift();
      if (!entry) return;
      if (!this.isCurrent(entry)) continue;  // reused (and maybe freed again) since
      const oldest = entry.block;
      const list = this.free.get(oldest.array.length)!;
      list.splice(list.indexOf(oldest), 1);
      if (list.length === 0) this.free.delete(oldest.array.length);
      this.blocks.delete(oldest.array.buffer);
      oldest.state = 'shared';  // no longer tracked: never recycled
      this.stats.freeBytes -= oldest.array.length * 4;
      return;
    }
  }
}

/** The process-wide pool used by the native kernels. */
export const outputPool = new OutputPool();
