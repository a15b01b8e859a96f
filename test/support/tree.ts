// A mounted tree described for byte-for-byte comparison between nodes.

import * as fsp from 'node:fs/promises';
import { join } from 'node:path';
import { sha256File } from './mount.ts';

/** Every path under root (but /.lessfs): kind, mode, size, link count, sha256 of the bytes. */
export async function treeOf(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string): Promise<void> => {
    const names = (await fsp.readdir(join(root, rel))).filter((n) => !(rel === '' && n === '.lessfs')).sort();
    for (const name of names) {
      const r = rel === '' ? name : `${rel}/${name}`;
      const p = join(root, r);
      const st = await fsp.lstat(p);
      const mode = (st.mode & 0o7777).toString(8);
      if (st.isDirectory()) {
        out.set(r, `dir ${mode} nlink=${st.nlink}`);
        await walk(r);
      } else if (st.isSymbolicLink()) {
        out.set(r, `symlink ${mode} size=${st.size} nlink=${st.nlink} -> ${await fsp.readlink(p)}`);
      } else if (st.isFile()) {
        out.set(r, `file ${mode} size=${st.size} nlink=${st.nlink} sha256=${await sha256File(p)}`);
      } else {
        out.set(r, `other ${st.mode.toString(8)}`);
      }
    }
  };
  await walk('');
  return out;
}

