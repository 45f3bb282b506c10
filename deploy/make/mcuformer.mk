# Read after TFLM's own Makefile (make -f <tflm>/tensorflow/lite/micro/tools/make/Makefile
# -f mcuformer.mk ...), so the project's kernels and apps are compiled by the
# same make run, with exactly the library's compiler, flags, defines and
# includes, and linked against the library that run builds (`microlite`).
#
# Set by deploy/tflm_make.py (absolute paths):
#   MCUF_PROGRAM      the program to link
#   MCUF_OBJDIR       where the app's objects go (no trailing slash)
#   MCUF_KERNEL_OBJDIR where the kernels' objects go (shared by the target's programs)
#   MCUF_KERNEL_SRCS  compiled like TFLM kernels ($(KERNEL_OPTIMIZATION_LEVEL),$(MCUF_KERNEL_CPPFLAGS))
#   MCUF_APP_SRCS     compiled like TFLM core code ($(CORE_OPTIMIZATION_LEVEL),$(MCUF_CPPFLAGS))
#   MCUF_CPPFLAGS     extra flags for the app (-I, -D)
#   MCUF_KERNEL_CPPFLAGS extra flags for the kernels
#   MCUF_LDFLAGS      extra link flags (linker script, specs)

MCUF_APP_OBJS := $(addprefix $(MCUF_OBJDIR),$(addsuffix .o,$(MCUF_APP_SRCS)))
MCUF_KERNEL_OBJS := $(addprefix $(MCUF_KERNEL_OBJDIR),$(addsuffix .o,$(MCUF_KERNEL_SRCS)))
MCUF_OBJS := $(MCUF_KERNEL_OBJS) $(MCUF_APP_OBJS)

MCUF_COMPILE = $(MKDIR_P) $(dir $@) && $(1) $(2) $(3) $(INCLUDES) $(4) -MMD -MP -c $< -o $@

$(MCUF_KERNEL_OBJDIR)%.cc.o: %.cc $(THIRD_PARTY_TARGETS)
	$(Q)$(call MCUF_COMPILE,$(CXX),$(CXXFLAGS),$(KERNEL_OPTIMIZATION_LEVEL),$(MCUF_KERNEL_CPPFLAGS))

$(MCUF_KERNEL_OBJDIR)%.c.o: %.c $(THIRD_PARTY_TARGETS)
	$(Q)$(call MCUF_COMPILE,$(CC),$(CCFLAGS),$(KERNEL_OPTIMIZATION_LEVEL),$(MCUF_KERNEL_CPPFLAGS))

$(MCUF_OBJDIR)%.cc.o: %.cc $(THIRD_PARTY_TARGETS)
	$(Q)$(call MCUF_COMPILE,$(CXX),$(CXXFLAGS),$(CORE_OPTIMIZATION_LEVEL),$(MCUF_CPPFLAGS))

$(MCUF_OBJDIR)%.c.o: %.c $(THIRD_PARTY_TARGETS)
	$(Q)$(call MCUF_COMPILE,$(CC),$(CCFLAGS),$(CORE_OPTIMIZATION_LEVEL),$(MCUF_CPPFLAGS))

$(MCUF_PROGRAM): $(MCUF_OBJS) $(MICROLITE_LIB_PATH)
	$(Q)$(MKDIR_P) $(dir $@)
	$(Q)$(CXX) $(CXXFLAGS) -o $@ $(MCUF_OBJS) $(MICROLITE_LIB_PATH) $(LDFLAGS) $(MCUF_LDFLAGS) $(MICROLITE_LIBS)

.PHONY: mcuf_program
mcuf_program: $(MCUF_PROGRAM)

-include $(MCUF_OBJS:.o=.d)
