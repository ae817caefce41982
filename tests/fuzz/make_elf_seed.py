#!/usr/bin/env python3
"""Writes the seed corpus/fuzz_elf_file/minimal.so: the smallest file the loader's ELF checks
accept, with what they read (a shardline_abi record, .dynamic naming a needed library,
.dynsym with an STB_GNU_UNIQUE symbol). A real plugin is hundreds of KB; the fuzzer mutates
this one faster and reaches every check.  Usage: make_elf_seed.py OUT"""
import struct
import sys

def main(out):
    dynstr = b"\0libstdc++.so.6\0_ZN1a1bE\0"
    # Elf64_Sym: name, info, other, shndx, value, size. info 0x1a: STB_GNU_UNIQUE, STT_OBJECT.
    dynsym = bytes(24) + struct.pack("<IBBHQQ", 16, 0x1A, 0, 0, 0, 0)
    dynamic = struct.pack("<qQ", 1, 1) + struct.pack("<qQ", 0, 0)  # DT_NEEDED, DT_NULL
    abi = b"SHRDLN\0\0" + struct.pack("<5I", 2, 12, 2, 1, 11100) + b"0.3.0".ljust(16, b"\0")
    names = [b"", b".shstrtab", b".dynstr", b".dynsym", b".dynamic", b"shardline_abi"]
    shstrtab = b"\0".join(names) + b"\0"
    name_at = [shstrtab.index(n + b"\0") if n else 0 for n in names]
    # Layout: ELF header, one program header, then the sections' bytes, then section headers.
    data = [shstrtab, dynstr, dynsym, dynamic, abi]
    offset = 64 + 56
    offsets = []
    for d in data:
        offsets.append(offset)
        offset += len(d)
    shoff = offset
    # SHT_STRTAB 3, SHT_DYNSYM 11, SHT_DYNAMIC 6, SHT_PROGBITS 1
    types = [3, 3, 11, 6, 1]
    sections = [bytes(64)]
    for i, d in enumerate(data):
        sections.append(struct.pack("<IIQQQQIIQQ", name_at[i + 1], types[i], 0, 0,
                                    offsets[i], len(d), 0, 0, 1, 0))
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 3, 62, 1, 0, 64, shoff, 0, 64, 56, 1, 64,
                               len(sections), 1)
    # PT_LOAD over the whole file.
    size = shoff + 64 * len(sections)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, size, size, 0x1000)
    with open(out, "wb") as f:
        f.write(ehdr + phdr + b"".join(data) + b"".join(sections))

if __name__ == "__main__":
    main(sys.argv[1])
