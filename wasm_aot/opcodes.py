"""The opcode table of the core instruction set (WebAssembly 2.0, fixed-width SIMD included).

One row per instruction: number, mnemonic, immediate kind and, for the plain stack operators,
their type as `params>results` in one letter per value (i=i32 I=i64 f=f32 F=f64 V=v128).
0xFC-prefixed instructions are numbered 0xFC00 | sub-opcode.

Immediate kinds (the shape of `imm` in an ir.Instr):
  none          None
  block         None (empty) | ValType (one result) | int (a type index)
  label         int label depth
  br_table      (tuple of label depths, default depth)
  func          int function index
  call_indirect (type index, table index)
  local/global/table/memory/data/elem   int index
  memarg        (alignment exponent, offset)
  i32/i64       signed int value
  f32/f64       int bit pattern
  select_t      tuple of ValType
  reftype       ValType
  data_memory   (data index, memory index)        memory.init
  memory_memory (dst memory, src memory)          memory.copy
  elem_table    (elem index, table index)         table.init
  table_table   (dst table, src table)            table.copy
"""
from __future__ import annotations

from .types import ValType

_TABLE = """
0x00 unreachable none
0x01 nop none
0x02 block block
0x03 loop block
0x04 if block
0x05 else none
0x0B end none
0x0C br label
0x0D br_if label
0x0E br_table br_table
0x0F return none
0x10 call func
0x11 call_indirect call_indirect
0x1A drop none
0x1B select none
0x1C select_t select_t
0x20 local.get local
0x21 local.set local
0x22 local.tee local
0x23 global.get global
0x24 global.set global
0x25 table.get table
0x26 table.set table
0x28 i32.load memarg i>i
0x29 i64.load memarg i>I
0x2A f32.load memarg i>f
0x2B f64.load memarg i>F
0x2C i32.load8_s memarg i>i
0x2D i32.load8_u memarg i>i
0x2E i32.load16_s memarg i>i
0x2F i32.load16_u memarg i>i
0x30 i64.load8_s memarg i>I
0x31 i64.load8_u memarg i>I
0x32 i64.load16_s memarg i>I
0x33 i64.load16_u memarg i>I
0x34 i64.load32_s memarg i>I
0x35 i64.load32_u memarg i>I
0x36 i32.store memarg ii>
0x37 i64.store memarg iI>
0x38 f32.store memarg if>
0x39 f64.store memarg iF>
0x3A i32.store8 memarg ii>
0x3B i32.store16 memarg ii>
0x3C i64.store8 memarg iI>
0x3D i64.store16 memarg iI>
0x3E i64.store32 memarg iI>
0x3F memory.size memory >i
0x40 memory.grow memory i>i
0x41 i32.const i32 >i
0x42 i64.const i64 >I
0x43 f32.const f32 >f
0x44 f64.const f64 >F
0x45 i32.eqz none i>i
0x46 i32.eq none ii>i
0x47 i32.ne none ii>i
0x48 i32.lt_s none ii>i
0x49 i32.lt_u none ii>i
0x4A i32.gt_s none ii>i
0x4B i32.gt_u none ii>i
0x4C i32.le_s none ii>i
0x4D i32.le_u none ii>i
0x4E i32.ge_s none ii>i
0x4F i32.ge_u none ii>i
0x50 i64.eqz none I>i
0x51 i64.eq none II>i
0x52 i64.ne none II>i
0x53 i64.lt_s none II>i
0x54 i64.lt_u none II>i
0x55 i64.gt_s none II>i
0x56 i64.gt_u none II>i
0x57 i64.le_s none II>i
0x58 i64.le_u none II>i
0x59 i64.ge_s none II>i
0x5A i64.ge_u none II>i
0x5B f32.eq none ff>i
0x5C f32.ne none ff>i
0x5D f32.lt none ff>i
0x5E f32.gt none ff>i
0x5F f32.le none ff>i
0x60 f32.ge none ff>i
0x61 f64.eq none FF>i
0x62 f64.ne none FF>i
0x63 f64.lt none FF>i
0x64 f64.gt none FF>i
0x65 f64.le none FF>i
0x66 f64.ge none FF>i
0x67 i32.clz none i>i
0x68 i32.ctz none i>i
0x69 i32.popcnt none i>i
0x6A i32.add none ii>i
0x6B i32.sub none ii>i
0x6C i32.mul none ii>i
0x6D i32.div_s none ii>i
0x6E i32.div_u none ii>i
0x6F i32.rem_s none ii>i
0x70 i32.rem_u none ii>i
0x71 i32.and none ii>i
0x72 i32.or none ii>i
0x73 i32.xor none ii>i
0x74 i32.shl none ii>i
0x75 i32.shr_s none ii>i
0x76 i32.shr_u none ii>i
0x77 i32.rotl none ii>i
0x78 i32.rotr none ii>i
0x79 i64.clz none I>I
0x7A i64.ctz none I>I
0x7B i64.popcnt none I>I
0x7C i64.add none II>I
0x7D i64.sub none II>I
0x7E i64.mul none II>I
0x7F i64.div_s none II>I
0x80 i64.div_u none II>I
0x81 i64.rem_s none II>I
0x82 i64.rem_u none II>I
0x83 i64.and none II>I
0x84 i64.or none II>I
0x85 i64.xor none II>I
0x86 i64.shl none II>I
0x87 i64.shr_s none II>I
0x88 i64.shr_u none II>I
0x89 i64.rotl none II>I
0x8A i64.rotr none II>I
0x8B f32.abs none f>f
0x8C f32.neg none f>f
0x8D f32.ceil none f>f
0x8E f32.floor none f>f
0x8F f32.trunc none f>f
0x90 f32.nearest none f>f
0x91 f32.sqrt none f>f
0x92 f32.add none ff>f
0x93 f32.sub none ff>f
0x94 f32.mul none ff>f
0x95 f32.div none ff>f
0x96 f32.min none ff>f
0x97 f32.max none ff>f
0x98 f32.copysign none ff>f
0x99 f64.abs none F>F
0x9A f64.neg none F>F
0x9B f64.ceil none F>F
0x9C f64.floor none F>F
0x9D f64.trunc none F>F
0x9E f64.nearest none F>F
0x9F f64.sqrt none F>F
0xA0 f64.add none FF>F
0xA1 f64.sub none FF>F
0xA2 f64.mul none FF>F
0xA3 f64.div none FF>F
0xA4 f64.min none FF>F
0xA5 f64.max none FF>F
0xA6 f64.copysign none FF>F
0xA7 i32.wrap_i64 none I>i
0xA8 i32.trunc_f32_s none f>i
0xA9 i32.trunc_f32_u none f>i
0xAA i32.trunc_f64_s none F>i
0xAB i32.trunc_f64_u none F>i
0xAC i64.extend_i32_s none i>I
0xAD i64.extend_i32_u none i>I
0xAE i64.trunc_f32_s none f>I
0xAF i64.trunc_f32_u none f>I
0xB0 i64.trunc_f64_s none F>I
0xB1 i64.trunc_f64_u none F>I
0xB2 f32.convert_i32_s none i>f
0xB3 f32.convert_i32_u none i>f
0xB4 f32.convert_i64_s none I>f
0xB5 f32.convert_i64_u none I>f
0xB6 f32.demote_f64 none F>f
0xB7 f64.convert_i32_s none i>F
0xB8 f64.convert_i32_u none i>F
0xB9 f64.convert_i64_s none I>F
0xBA f64.convert_i64_u none I>F
0xBB f64.promote_f32 none f>F
0xBC i32.reinterpret_f32 none f>i
0xBD i64.reinterpret_f64 none F>I
0xBE f32.reinterpret_i32 none i>f
0xBF f64.reinterpret_i64 none I>F
0xC0 i32.extend8_s none i>i
0xC1 i32.extend16_s none i>i
0xC2 i64.extend8_s none I>I
0xC3 i64.extend16_s none I>I
0xC4 i64.extend32_s none I>I
0xD0 ref.null reftype
0xD1 ref.is_null none
0xD2 ref.func func
0xFC00 i32.trunc_sat_f32_s none f>i
0xFC01 i32.trunc_sat_f32_u none f>i
0xFC02 i32.trunc_sat_f64_s none F>i
0xFC03 i32.trunc_sat_f64_u none F>i
0xFC04 i64.trunc_sat_f32_s none f>I
0xFC05 i64.trunc_sat_f32_u none f>I
0xFC06 i64.trunc_sat_f64_s none F>I
0xFC07 i64.trunc_sat_f64_u none F>I
0xFC08 memory.init data_memory
0xFC09 data.drop data
0xFC0A memory.copy memory_memory
0xFC0B memory.fill memory
0xFC0C table.init elem_table
0xFC0D elem.drop elem
0xFC0E table.copy table_table
0xFC0F table.grow table
0xFC10 table.size table
0xFC11 table.fill table
"""

# Fixed-width SIMD (0xFD prefix, a u32 sub-opcode): numbered 0xFD00 | sub-opcode. After the
# signature, a memory access gives its natural alignment (log2 bytes). More immediate kinds:
#   lane          int lane index
#   memarg_lane   ((alignment exponent, offset), lane index)
#   v128          int: the 16 bytes, little-endian
#   shuffle       tuple of 16 lane indices
_SIMD_TABLE = """
0xFD00 v128.load memarg i>V 4
0xFD01 v128.load8x8_s memarg i>V 3
0xFD02 v128.load8x8_u memarg i>V 3
0xFD03 v128.load16x4_s memarg i>V 3
0xFD04 v128.load16x4_u memarg i>V 3
0xFD05 v128.load32x2_s memarg i>V 3
0xFD06 v128.load32x2_u memarg i>V 3
0xFD07 v128.load8_splat memarg i>V 0
0xFD08 v128.load16_splat memarg i>V 1
0xFD09 v128.load32_splat memarg i>V 2
0xFD0A v128.load64_splat memarg i>V 3
0xFD0B v128.store memarg iV> 4
0xFD0C v128.const v128 >V
0xFD0D i8x16.shuffle shuffle VV>V
0xFD0E i8x16.swizzle none VV>V
0xFD0F i8x16.splat none i>V
0xFD10 i16x8.splat none i>V
0xFD11 i32x4.splat none i>V
0xFD12 i64x2.splat none I>V
0xFD13 f32x4.splat none f>V
0xFD14 f64x2.splat none F>V
0xFD15 i8x16.extract_lane_s lane V>i
0xFD16 i8x16.extract_lane_u lane V>i
0xFD17 i8x16.replace_lane lane Vi>V
0xFD18 i16x8.extract_lane_s lane V>i
0xFD19 i16x8.extract_lane_u lane V>i
0xFD1A i16x8.replace_lane lane Vi>V
0xFD1B i32x4.extract_lane lane V>i
0xFD1C i32x4.replace_lane lane Vi>V
0xFD1D i64x2.extract_lane lane V>I
0xFD1E i64x2.replace_lane lane VI>V
0xFD1F f32x4.extract_lane lane V>f
0xFD20 f32x4.replace_lane lane Vf>V
0xFD21 f64x2.extract_lane lane V>F
0xFD22 f64x2.replace_lane lane VF>V
0xFD23 i8x16.eq none VV>V
0xFD24 i8x16.ne none VV>V
0xFD25 i8x16.lt_s none VV>V
0xFD26 i8x16.lt_u none VV>V
0xFD27 i8x16.gt_s none VV>V
0xFD28 i8x16.gt_u none VV>V
0xFD29 i8x16.le_s none VV>V
0xFD2A i8x16.le_u none VV>V
0xFD2B i8x16.ge_s none VV>V
0xFD2C i8x16.ge_u none VV>V
0xFD2D i16x8.eq none VV>V
0xFD2E i16x8.ne none VV>V
0xFD2F i16x8.lt_s none VV>V
0xFD30 i16x8.lt_u none VV>V
0xFD31 i16x8.gt_s none VV>V
0xFD32 i16x8.gt_u none VV>V
0xFD33 i16x8.le_s none VV>V
0xFD34 i16x8.le_u none VV>V
0xFD35 i16x8.ge_s none VV>V
0xFD36 i16x8.ge_u none VV>V
0xFD37 i32x4.eq none VV>V
0xFD38 i32x4.ne none VV>V
0xFD39 i32x4.lt_s none VV>V
0xFD3A i32x4.lt_u none VV>V
0xFD3B i32x4.gt_s none VV>V
0xFD3C i32x4.gt_u none VV>V
0xFD3D i32x4.le_s none VV>V
0xFD3E i32x4.le_u none VV>V
0xFD3F i32x4.ge_s none VV>V
0xFD40 i32x4.ge_u none VV>V
0xFD41 f32x4.eq none VV>V
0xFD42 f32x4.ne none VV>V
0xFD43 f32x4.lt none VV>V
0xFD44 f32x4.gt none VV>V
0xFD45 f32x4.le none VV>V
0xFD46 f32x4.ge none VV>V
0xFD47 f64x2.eq none VV>V
0xFD48 f64x2.ne none VV>V
0xFD49 f64x2.lt none VV>V
0xFD4A f64x2.gt none VV>V
0xFD4B f64x2.le none VV>V
0xFD4C f64x2.ge none VV>V
0xFD4D v128.not none V>V
0xFD4E v128.and none VV>V
0xFD4F v128.andnot none VV>V
0xFD50 v128.or none VV>V
0xFD51 v128.xor none VV>V
0xFD52 v128.bitselect none VVV>V
0xFD53 v128.any_true none V>i
0xFD54 v128.load8_lane memarg_lane iV>V 0
0xFD55 v128.load16_lane memarg_lane iV>V 1
0xFD56 v128.load32_lane memarg_lane iV>V 2
0xFD57 v128.load64_lane memarg_lane iV>V 3
0xFD58 v128.store8_lane memarg_lane iV> 0
0xFD59 v128.store16_lane memarg_lane iV> 1
0xFD5A v128.store32_lane memarg_lane iV> 2
0xFD5B v128.store64_lane memarg_lane iV> 3
0xFD5C v128.load32_zero memarg i>V 2
0xFD5D v128.load64_zero memarg i>V 3
0xFD5E f32x4.demote_f64x2_zero none V>V
0xFD5F f64x2.promote_low_f32x4 none V>V
0xFD60 i8x16.abs none V>V
0xFD61 i8x16.neg none V>V
0xFD62 i8x16.popcnt none V>V
0xFD63 i8x16.all_true none V>i
0xFD64 i8x16.bitmask none V>i
0xFD65 i8x16.narrow_i16x8_s none VV>V
0xFD66 i8x16.narrow_i16x8_u none VV>V
0xFD67 f32x4.ceil none V>V
0xFD68 f32x4.floor none V>V
0xFD69 f32x4.trunc none V>V
0xFD6A f32x4.nearest none V>V
0xFD6B i8x16.shl none Vi>V
0xFD6C i8x16.shr_s none Vi>V
0xFD6D i8x16.shr_u none Vi>V
0xFD6E i8x16.add none VV>V
0xFD6F i8x16.add_sat_s none VV>V
0xFD70 i8x16.add_sat_u none VV>V
0xFD71 i8x16.sub none VV>V
0xFD72 i8x16.sub_sat_s none VV>V
0xFD73 i8x16.sub_sat_u none VV>V
0xFD74 f64x2.ceil none V>V
0xFD75 f64x2.floor none V>V
0xFD76 i8x16.min_s none VV>V
0xFD77 i8x16.min_u none VV>V
0xFD78 i8x16.max_s none VV>V
0xFD79 i8x16.max_u none VV>V
0xFD7A f64x2.trunc none V>V
0xFD7B i8x16.avgr_u none VV>V
0xFD7C i16x8.extadd_pairwise_i8x16_s none V>V
0xFD7D i16x8.extadd_pairwise_i8x16_u none V>V
0xFD7E i32x4.extadd_pairwise_i16x8_s none V>V
0xFD7F i32x4.extadd_pairwise_i16x8_u none V>V
0xFD80 i16x8.abs none V>V
0xFD81 i16x8.neg none V>V
0xFD82 i16x8.q15mulr_sat_s none VV>V
0xFD83 i16x8.all_true none V>i
0xFD84 i16x8.bitmask none V>i
0xFD85 i16x8.narrow_i32x4_s none VV>V
0xFD86 i16x8.narrow_i32x4_u none VV>V
0xFD87 i16x8.extend_low_i8x16_s none V>V
0xFD88 i16x8.extend_high_i8x16_s none V>V
0xFD89 i16x8.extend_low_i8x16_u none V>V
0xFD8A i16x8.extend_high_i8x16_u none V>V
0xFD8B i16x8.shl none Vi>V
0xFD8C i16x8.shr_s none Vi>V
0xFD8D i16x8.shr_u none Vi>V
0xFD8E i16x8.add none VV>V
0xFD8F i16x8.add_sat_s none VV>V
0xFD90 i16x8.add_sat_u none VV>V
0xFD91 i16x8.sub none VV>V
0xFD92 i16x8.sub_sat_s none VV>V
0xFD93 i16x8.sub_sat_u none VV>V
0xFD94 f64x2.nearest none V>V
0xFD95 i16x8.mul none VV>V
0xFD96 i16x8.min_s none VV>V
0xFD97 i16x8.min_u none VV>V
0xFD98 i16x8.max_s none VV>V
0xFD99 i16x8.max_u none VV>V
0xFD9B i16x8.avgr_u none VV>V
0xFD9C i16x8.extmul_low_i8x16_s none VV>V
0xFD9D i16x8.extmul_high_i8x16_s none VV>V
0xFD9E i16x8.extmul_low_i8x16_u none VV>V
0xFD9F i16x8.extmul_high_i8x16_u none VV>V
0xFDA0 i32x4.abs none V>V
0xFDA1 i32x4.neg none V>V
0xFDA3 i32x4.all_true none V>i
0xFDA4 i32x4.bitmask none V>i
0xFDA7 i32x4.extend_low_i16x8_s none V>V
0xFDA8 i32x4.extend_high_i16x8_s none V>V
0xFDA9 i32x4.extend_low_i16x8_u none V>V
0xFDAA i32x4.extend_high_i16x8_u none V>V
0xFDAB i32x4.shl none Vi>V
0xFDAC i32x4.shr_s none Vi>V
0xFDAD i32x4.shr_u none Vi>V
0xFDAE i32x4.add none VV>V
0xFDB1 i32x4.sub none VV>V
0xFDB5 i32x4.mul none VV>V
0xFDB6 i32x4.min_s none VV>V
0xFDB7 i32x4.min_u none VV>V
0xFDB8 i32x4.max_s none VV>V
0xFDB9 i32x4.max_u none VV>V
0xFDBA i32x4.dot_i16x8_s none VV>V
0xFDBC i32x4.extmul_low_i16x8_s none VV>V
0xFDBD i32x4.extmul_high_i16x8_s none VV>V
0xFDBE i32x4.extmul_low_i16x8_u none VV>V
0xFDBF i32x4.extmul_high_i16x8_u none VV>V
0xFDC0 i64x2.abs none V>V
0xFDC1 i64x2.neg none V>V
0xFDC3 i64x2.all_true none V>i
0xFDC4 i64x2.bitmask none V>i
0xFDC7 i64x2.extend_low_i32x4_s none V>V
0xFDC8 i64x2.extend_high_i32x4_s none V>V
0xFDC9 i64x2.extend_low_i32x4_u none V>V
0xFDCA i64x2.extend_high_i32x4_u none V>V
0xFDCB i64x2.shl none Vi>V
0xFDCC i64x2.shr_s none Vi>V
0xFDCD i64x2.shr_u none Vi>V
0xFDCE i64x2.add none VV>V
0xFDD1 i64x2.sub none VV>V
0xFDD5 i64x2.mul none VV>V
0xFDD6 i64x2.eq none VV>V
0xFDD7 i64x2.ne none VV>V
0xFDD8 i64x2.lt_s none VV>V
0xFDD9 i64x2.gt_s none VV>V
0xFDDA i64x2.le_s none VV>V
0xFDDB i64x2.ge_s none VV>V
0xFDDC i64x2.extmul_low_i32x4_s none VV>V
0xFDDD i64x2.extmul_high_i32x4_s none VV>V
0xFDDE i64x2.extmul_low_i32x4_u none VV>V
0xFDDF i64x2.extmul_high_i32x4_u none VV>V
0xFDE0 f32x4.abs none V>V
0xFDE1 f32x4.neg none V>V
0xFDE3 f32x4.sqrt none V>V
0xFDE4 f32x4.add none VV>V
0xFDE5 f32x4.sub none VV>V
0xFDE6 f32x4.mul none VV>V
0xFDE7 f32x4.div none VV>V
0xFDE8 f32x4.min none VV>V
0xFDE9 f32x4.max none VV>V
0xFDEA f32x4.pmin none VV>V
0xFDEB f32x4.pmax none VV>V
0xFDEC f64x2.abs none V>V
0xFDED f64x2.neg none V>V
0xFDEF f64x2.sqrt none V>V
0xFDF0 f64x2.add none VV>V
0xFDF1 f64x2.sub none VV>V
0xFDF2 f64x2.mul none VV>V
0xFDF3 f64x2.div none VV>V
0xFDF4 f64x2.min none VV>V
0xFDF5 f64x2.max none VV>V
0xFDF6 f64x2.pmin none VV>V
0xFDF7 f64x2.pmax none VV>V
0xFDF8 i32x4.trunc_sat_f32x4_s none V>V
0xFDF9 i32x4.trunc_sat_f32x4_u none V>V
0xFDFA f32x4.convert_i32x4_s none V>V
0xFDFB f32x4.convert_i32x4_u none V>V
0xFDFC i32x4.trunc_sat_f64x2_s_zero none V>V
0xFDFD i32x4.trunc_sat_f64x2_u_zero none V>V
0xFDFE f64x2.convert_low_i32x4_s none V>V
0xFDFF f64x2.convert_low_i32x4_u none V>V
"""

_LETTER = {"i": ValType.I32, "I": ValType.I64, "f": ValType.F32, "F": ValType.F64, "V": ValType.V128}

NAME: dict[int, str] = {}  # opcode -> mnemonic
KIND: dict[int, str] = {}  # opcode -> immediate kind
SIG: dict[int, tuple[tuple[ValType, ...], tuple[ValType, ...]]] = {}  # plain stack operators only
BY_NAME: dict[str, int] = {}

# Natural alignment (log2 of the access width in bytes) of every load and store.
NATURAL_ALIGN: dict[int, int] = {}

for _line in (_TABLE + _SIMD_TABLE).split("\n"):
    _parts = _line.split()
    if not _parts:
        continue
    _op = int(_parts[0], 16)
    NAME[_op], KIND[_op] = _parts[1], _parts[2]
    BY_NAME[_parts[1]] = _op
    if len(_parts) > 3:
        _p, _r = _parts[3].split(">")
        SIG[_op] = (tuple(_LETTER[c] for c in _p), tuple(_LETTER[c] for c in _r))
    if len(_parts) > 4:
        NATURAL_ALIGN[_op] = int(_parts[4])

for _op, _name in NAME.items():
    if KIND[_op] == "memarg" and _op not in NATURAL_ALIGN:
        _suffix = _name.split(".")[1]
        _width = {"load8": 0, "load16": 1, "load32": 2, "store8": 0, "store16": 1, "store32": 2}.get(
            _suffix.split("_")[0])
        if _width is None:
            _width = 2 if _name[1:3] == "32" else 3
        NATURAL_ALIGN[_op] = _width

# Convenience constants for the control instructions the decoder, validator and codegen all use.
UNREACHABLE, NOP, BLOCK, LOOP, IF, ELSE, END = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x0B
BR, BR_IF, BR_TABLE, RETURN, CALL, CALL_INDIRECT = 0x0C, 0x0D, 0x0E, 0x0F, 0x10, 0x11
DROP, SELECT, SELECT_T = 0x1A, 0x1B, 0x1C
LOCAL_GET, LOCAL_SET, LOCAL_TEE, GLOBAL_GET, GLOBAL_SET = 0x20, 0x21, 0x22, 0x23, 0x24
I32_CONST, I64_CONST, F32_CONST, F64_CONST = 0x41, 0x42, 0x43, 0x44
REF_NULL, REF_IS_NULL, REF_FUNC = 0xD0, 0xD1, 0xD2
