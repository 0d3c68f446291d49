#include <gtest/gtest.h>

#include "didmark/error.hpp"
#include "didmark/tensor.hpp"

using namespace didmark;

TEST(Tensor, SizesNamesAndParsing) {
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::f64), 8u);
  EXPECT_EQ(parse_dtype("bfloat16"), DType::bf16);
  EXPECT_EQ(parse_dtype("F32"), DType::f32);
  EXPECT_FALSE(parse_dtype("complex64").has_value());
  EXPECT_TRUE(is_watermarkable(DType::f16));
  EXPECT_FALSE(is_watermarkable(DType::i8));
}

TEST(Tensor, ContiguityAndDescription) {
  float buf[12];
  auto v = TensorView::contiguous(buf, DType::f32, {3, 4});
  EXPECT_EQ(v.numel(), 12);
  EXPECT_TRUE(v.is_contiguous());
  v.strides = {4, 1};
  EXPECT_TRUE(v.is_contiguous());
  v.strides = {1, 3};
  EXPECT_FALSE(v.is_contiguous());
  EXPECT_EQ(v.describe(), "f32[3, 4] on cpu");
}

TEST(Tensor, ValidateRejectsBadViews) {
  float buf[4];
  auto v = TensorView::contiguous(nullptr, DType::f32, {2, 2});
  EXPECT_THROW(validate_view(v, "t"), Error);
  v.data = buf;
  v.shape = {2, -1};
  try {
    validate_view(v, "weights");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Errc::invalid_argument);
    EXPECT_NE(std::string(e.what()).find("weights"), std::string::npos);
  }
}
