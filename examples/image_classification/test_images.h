// Test images embedded in the app; `mcuformer build` writes test_images.cc
// from the data set's test split (int8: pixel - 128, the model's input).
#ifndef MCUFORMER_EXAMPLE_TEST_IMAGES_H_
#define MCUFORMER_EXAMPLE_TEST_IMAGES_H_

#include <stdint.h>

extern const int kNumTestImages;
extern const int kTestImageBytes;
extern const int8_t g_test_images[];  // kNumTestImages * kTestImageBytes
extern const int8_t g_test_labels[];  // kNumTestImages

#endif  // MCUFORMER_EXAMPLE_TEST_IMAGES_H_
