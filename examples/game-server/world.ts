/**
 * The game world: a square 2D map where players move. Positions live in a uniform grid of cells as wide as
 * the "near" radius, so finding nearby players looks at nine cells instead of every player.
 */
import { MAP_SIZE, NEAR_RADIUS } from './protocol.ts';

export interface Avatar {
  readonly id: number;
  readonly name: string;
  x: number;
  y: number;
  /** Index of the grid cell holding the avatar. */
  cell: number;
  /** `["name",x,y]` as sent in snapshots, cached for the tick in `fragmentTick`. */
  fragment: string;
  fragmentTick: number;
}

const clamp = (value: number): number => Math.min(MAP_SIZE, Math.max(0, value));

export class World {
  readonly size = MAP_SIZE;
  readonly #cellSize: number;
  readonly #cellsPerRow: number;
  readonly #cells: Array<Set<Avatar>>;
  readonly #avatars = new Map<number, Avatar>();

  constructor(cellSize = NEAR_RADIUS) {
    this.#cellSize = cellSize;
    this.#cellsPerRow = Math.floor(MAP_SIZE / cellSize) + 1;
    this.#cells = Array.from({ length: this.#cellsPerRow * this.#cellsPerRow }, () => new Set<Avatar>());
  }

  get count(): number {
    return this.#avatars.size;
  }

  #cellOf(x: number, y: number): number {
    return Math.floor(y / this.#cellSize) * this.#cellsPerRow + Math.floor(x / this.#cellSize);
  }

  add(id: number, name: string, x: number, y: number): Avatar {
    const cx = clamp(x);
    const cy = clamp(y);
    const avatar: Avatar = {
      id,
      name,
      x: cx,
      y: cy,
      cell: this.#cellOf(cx, cy),
      fragment: '',
      fragmentTick: -1,
    };
    this.#avatars.set(id, avatar);
    this.#cells[avatar.cell]?.add(avatar);
    return avatar;
  }

  remove(id: number): Avatar | undefined {
    const avatar = this.#avatars.get(id);
    if (!avatar) return undefined;
    this.#avatars.delete(id);
    this.#cells[avatar.cell]?.delete(avatar);
    return avatar;
  }

  get(id: number): Avatar | undefined {
    return this.#avatars.get(id);
  }

  /** Moves an avatar by (dx, dy), kept inside the map. */
  move(avatar: Avatar, dx: number, dy: number): void {
    avatar.x = clamp(avatar.x + dx);
    avatar.y = clamp(avatar.y + dy);
    const cell = this.#cellOf(avatar.x, avatar.y);
    if (cell !== avatar.cell) {
      this.#cells[avatar.cell]?.delete(avatar);
      this.#cells[cell]?.add(avatar);
      avatar.cell = cell;
    }
  }

  /**
   * Calls `visit` for each avatar within `radius` (at most NEAR_RADIUS) of `center`, the center itself
   * included, until `visit` returns false.
   */
  forEachNear(center: Avatar, radius: number, visit: (other: Avatar) => boolean | void): void {
    const r2 = radius * radius;
    const row = Math.floor(center.y / this.#cellSize);
    const col = Math.floor(center.x / this.#cellSize);
    for (let r = row - 1; r <= row + 1; r++) {
      if (r < 0 || r >= this.#cellsPerRow) continue;
      for (let c = col - 1; c <= col + 1; c++) {
        if (c < 0 || c >= this.#cellsPerRow) continue;
        const cell = this.#cells[r * this.#cellsPerRow + c];
        if (!cell) continue;
        for (const other of cell) {
          const ddx = other.x - center.x;
          const ddy = other.y - center.y;
          if (ddx * ddx + ddy * ddy <= r2 && visit(other) === false) return;
        }
      }
    }
  }

  /** A random position inside the map (new players spawn there). */
  randomPosition(random: () => number = Math.random): { x: number; y: number } {
    return { x: Math.round(random() * MAP_SIZE), y: Math.round(random() * MAP_SIZE) };
  }
}
